package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
			p, err := captureProfile(ctx, &f, accel)
			if err != nil {
				return err
			}
			p.OVMFVersion = ovmfVersion
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

// captureDevices are the QEMU arguments that add devices in a capture run.
var captureDevices = []string{"-tpmdev emulator,id=tpm0,chardev=chrtpm", "-device tpm-crb,tpmdev=tpm0", "-net none"}

func captureProfile(ctx context.Context, f *tpmInputFlags, accel string) (*measure.Profile, error) {
	req, err := f.request()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mkcvm-capture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	vars := filepath.Join(dir, "vars.fd")
	if err := os.WriteFile(vars, req.Vars, 0o600); err != nil {
		return nil, err
	}
	sock, stop, err := captureStartSwtpm(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	serial := filepath.Join(dir, "serial.log")
	args := []string{"-machine", f.machine + ",accel=" + accel, "-m", strconv.Itoa(f.memory), "-smp", strconv.Itoa(f.vcpus),
		"-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + f.code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-kernel", f.kernel, "-append", f.appendLine, "-net", "none",
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-crb,tpmdev=tpm0",
		"-serial", "file:" + serial}
	if f.initrd != "" {
		args = append(args, "-initrd", f.initrd)
	}
	logger().Info("booting shape", "machine", f.machine, "memory_mib", f.memory, "vcpus", f.vcpus)
	q := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	q.Stderr, q.WaitDelay = &stderr, 5*time.Second
	if err := q.Run(); err != nil {
		return nil, fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	console, err := os.ReadFile(serial)
	if err != nil {
		return nil, err
	}
	log, pcrs, err := captureParseConsole(string(console))
	if err != nil {
		return nil, err
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	p := &measure.Profile{Schema: measure.ProfileSchema, QEMUVersion: captureToolVersion("qemu-system-x86_64", "--version"),
		SwtpmVersion: captureToolVersion("swtpm", "--version"), OVMFCodeSHA256: sum(req.Code), OVMFVarsSHA256: sum(req.Vars),
		Machine: f.machine, MemoryMiB: f.memory, VCPUs: f.vcpus, Devices: captureDevices,
		KernelSHA256: sum(req.Kernel), InitrdSize: int64(len(req.Initrd)), Cmdline: f.appendLine, EventLog: log, PCRs: pcrs}
	if req.Initrd != nil {
		p.InitrdSHA256 = sum(req.Initrd)
	}
	return p, nil
}

// captureParseConsole reads mkcvm-init's MKCVM-EVENTLOG and MKCVM-PCR records.
func captureParseConsole(console string) ([]byte, map[string]map[string]string, error) {
	var b64 strings.Builder
	in := false
	pcrs := map[string]map[string]string{}
	for line := range strings.Lines(console) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "MKCVM-EVENTLOG-BEGIN"):
			in = true
		case line == "MKCVM-EVENTLOG-END":
			in = false
		case in:
			b64.WriteString(line)
		case strings.HasPrefix(line, "MKCVM-PCR "):
			f := strings.Fields(line)
			if len(f) != 4 {
				return nil, nil, fmt.Errorf("console: malformed PCR record %q", line)
			}
			if pcrs[f[1]] == nil {
				pcrs[f[1]] = map[string]string{}
			}
			pcrs[f[1]][f[2]] = strings.ToLower(f[3])
		}
	}
	log, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil || len(log) == 0 {
		return nil, nil, fmt.Errorf("console: no event log dump (does the initrd's /init print MKCVM-EVENTLOG records?): %v", err)
	}
	return log, pcrs, nil
}

func captureToolVersion(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(l)
}

func captureStartSwtpm(ctx context.Context, dir string) (string, func(), error) {
	state := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+sock, "--flags", "startup-clear")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting swtpm: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for range 100 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("swtpm did not come up: %s", stderr.String())
}
