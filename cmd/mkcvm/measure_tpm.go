package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { addMeasureCommand(newMeasureTPMCmd) }

// tpmInputFlags name the inputs of a direct-boot PCR prediction; shared by
// `measure tpm`, `explain` and `capture`.
type tpmInputFlags struct {
	code, vars, kernel, initrd, appendLine, machine, profile string
	memory, vcpus                                            int
}

func (f *tpmInputFlags) RegisterFlags(fl *pflag.FlagSet, withProfile bool) {
	fl.StringVar(&f.code, "ovmf-code", "/usr/share/OVMF/OVMF_CODE_4M.fd", "OVMF CODE image (pflash unit 0)")
	fl.StringVar(&f.vars, "ovmf-vars", "/usr/share/OVMF/OVMF_VARS_4M.fd", "OVMF VARS template (a fresh copy is pflash unit 1)")
	fl.StringVar(&f.kernel, "kernel", "", "kernel (bzImage) given to QEMU -kernel")
	fl.StringVar(&f.initrd, "initrd", "", "initrd given to QEMU -initrd")
	fl.StringVar(&f.appendLine, "append", "", "kernel command line given to QEMU -append")
	fl.IntVar(&f.memory, "memory", 1024, "guest memory in MiB (-m)")
	fl.IntVar(&f.vcpus, "vcpus", 1, "vCPU count (-smp)")
	fl.StringVar(&f.machine, "machine", "q35", "QEMU machine type (q35 or pc)")
	if withProfile {
		fl.StringVar(&f.profile, "profile", "", "captured platform profile of this shape (mkcvm capture); pins PCR0 and PCR10")
	}
}

// request reads the files named by the flags.
func (f *tpmInputFlags) request() (builder.TPMRequest, error) {
	req := builder.TPMRequest{Cmdline: f.appendLine, Machine: f.machine, MemoryMiB: f.memory, VCPUs: f.vcpus}
	if f.kernel == "" {
		return req, fmt.Errorf("--kernel is required")
	}
	for _, r := range []struct {
		path string
		dst  *[]byte
	}{{f.code, &req.Code}, {f.vars, &req.Vars}, {f.kernel, &req.Kernel}, {f.initrd, &req.Initrd}, {f.profile, &req.Profile}} {
		if r.path == "" {
			continue
		}
		b, err := os.ReadFile(r.path)
		if err != nil {
			return req, err
		}
		*r.dst = b
	}
	if f.profile != "" {
		req.ProfileName = filepath.Base(f.profile)
	}
	return req, nil
}

func newMeasureTPMCmd() *cobra.Command {
	var f tpmInputFlags
	var bank string
	var asJSON bool
	var writeLog string
	cmd := &cobra.Command{
		Use:   "tpm --kernel K [--initrd I --append S --memory M --vcpus N --profile P]",
		Short: "Predict vTPM PCRs and the event log of a QEMU + OVMF direct boot",
		Long: `Predicts the TCG event log and PCRs 0-10 of a QEMU + OVMF direct kernel boot
(-kernel/-initrd/-append, -net none, swtpm). Prints "PCR<n> <hex>" per pinned
PCR of --bank. PCR0 (and PCR10, IMA's boot_aggregate over PCRs 0-9) need a
captured platform profile (--profile, from mkcvm capture); without one they
are omitted and listed on stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			alg, err := measure.ParseHashAlg(bank)
			if err != nil {
				return err
			}
			req, err := f.request()
			if err != nil {
				return err
			}
			p, err := builder.PredictTPM(req)
			if err != nil {
				return err
			}
			if _, ok := p.PCRs[alg]; !ok {
				return fmt.Errorf("bank %s not in the prediction (banks of the profile's log)", alg)
			}
			for _, pcr := range p.NotPinnedPCRs() {
				fmt.Fprintf(cmd.ErrOrStderr(), "PCR%d not pinned: %s\n", pcr, p.Why[pcr])
			}
			if writeLog != "" {
				if err := writePredictedLog(p, writeLog); err != nil {
					return err
				}
			}
			if asJSON {
				return writeTPMJSON(cmd, p, alg)
			}
			for _, pcr := range p.PinnedPCRs() {
				fmt.Fprintf(cmd.OutOrStdout(), "PCR%d %x\n", pcr, p.PCRs[alg][pcr])
			}
			return nil
		},
	}
	f.RegisterFlags(cmd.Flags(), true)
	cmd.Flags().StringVar(&bank, "bank", "sha256", "PCR bank: sha256 or sha384 (sha1, sha512 also work)")
	cmd.Flags().StringVar(&writeLog, "write-log", "", "also write the predicted event log (TCG binary format, for tpm2_eventlog) to this file; needs --profile")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: pcrs {bank: {index: hex}}, basis, why, not_pinned, event_log")
	return cmd
}

// tpmJSON is the --json output of `mkcvm measure tpm`.
type tpmJSON struct {
	PCRs      map[string]map[string]string `json:"pcrs"`
	Basis     map[string]string            `json:"basis"`
	Why       map[string]string            `json:"why"`
	NotPinned []int                        `json:"not_pinned"`
	EventLog  []manifest.Event             `json:"event_log"`
	// EventLogBinary is the predicted log in the TCG binary format
	// (base64), present when every event is predicted.
	EventLogBinary []byte `json:"event_log_binary,omitempty"`
}

func writeTPMJSON(cmd *cobra.Command, p *measure.Prediction, alg measure.HashAlg) error {
	out := tpmJSON{PCRs: map[string]map[string]string{alg.String(): {}}, Basis: map[string]string{}, Why: map[string]string{},
		NotPinned: []int{}, EventLog: builder.ManifestEvents(p)}
	for _, pcr := range p.PinnedPCRs() {
		out.PCRs[alg.String()][strconv.Itoa(int(pcr))] = hex.EncodeToString(p.PCRs[alg][pcr])
	}
	for pcr, b := range p.Basis {
		out.Basis[strconv.Itoa(int(pcr))], out.Why[strconv.Itoa(int(pcr))] = b, p.Why[pcr]
	}
	for _, pcr := range p.NotPinnedPCRs() {
		out.NotPinned = append(out.NotPinned, int(pcr))
	}
	if l, err := p.Log(); err == nil {
		if out.EventLogBinary, err = l.MarshalBinary(); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writePredictedLog(p *measure.Prediction, path string) error {
	l, err := p.Log()
	if err != nil {
		return err
	}
	b, err := l.MarshalBinary()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
