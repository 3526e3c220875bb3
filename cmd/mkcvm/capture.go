package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/spf13/cobra"
)

func init() { addCommand(newCaptureCmd) }

func newCaptureCmd() *cobra.Command {
	var f tpmInputFlags
	var out, ovmfVersion, accel string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "capture --kernel K --initrd I -o profile.json [--memory M --vcpus N --machine T]",
		Short: "Boot a VM shape once in QEMU with swtpm and record its platform profile",
		Long: `Boots the shape in QEMU (direct boot, -net none, OVMF CODE + a fresh VARS copy as
pflash, swtpm TPM 2.0 on tpm-crb) with an initrd whose /init dumps the firmware
event log and PCRs to the serial console (cmd/mkcvm-init, or the mkcvm
runner), and writes the platform profile: the event log, PCRs, QEMU/swtpm
versions, OVMF digests, machine, memory, vCPUs and device list. The profile
pins what OVMF measures after running in the VM (PCR0's PEI volume); pass it
to 'mkcvm measure tpm --profile' or name it in a recipe shape. The kernel,
initrd and command line of the capture do not affect the profile; without
--append the capture uses "console=ttyS0 panic=-1 quiet" (keep "quiet": kernel
messages interleaved with the dump make it unreadable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("-o/--out is required")
			}
			if f.appendLine == "" {
				// quiet keeps kernel messages from interleaving with the
				// init's dump on the serial console.
				f.appendLine = "console=ttyS0 panic=-1 quiet"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			p, err := builder.CaptureProfile(ctx, builder.CaptureRequest{
				Code: f.code, Vars: f.vars, Kernel: f.kernel, Initrd: f.initrd, Append: f.appendLine,
				Machine: f.machine, MemoryMiB: f.memory, VCPUs: f.vcpus, Accel: accel,
				OVMFVersion: ovmfVersion, Logger: logger(),
			})
			if err != nil {
				return err
			}
			b, err := p.Marshal()
			if err != nil {
				return err
			}
			if _, err := measure.ParseProfile(out, b); err != nil {
				return fmt.Errorf("captured profile does not check: %w", err)
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f.RegisterFlags(cmd.Flags(), false)
	fl := cmd.Flags()
	fl.StringVarP(&out, "out", "o", "", "profile file to write (JSON)")
	fl.StringVar(&ovmfVersion, "ovmf-version", "", "firmware build name recorded in the profile (e.g. Debian ovmf 2022.11-6+deb12u2)")
	fl.StringVar(&accel, "accel", "tcg", "QEMU accelerator (tcg or kvm)")
	fl.DurationVar(&timeout, "timeout", 3*time.Minute, "give up when the guest has not powered off by then")
	return cmd
}
