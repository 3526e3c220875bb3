package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/spf13/cobra"
)

func init() { addMeasureCommand(newMeasureTDXCmd) }

type measureTDXFlags struct {
	ovmf, pageOrder, kernel, initrd, appendLine, machine, profile string
	firmwareMeasures, stubMeasures                                string
	memory, vcpus                                                 int
	json                                                          bool
}

func newMeasureTDXCmd() *cobra.Command {
	var f measureTDXFlags
	cmd := &cobra.Command{
		Use:   "tdx --ovmf OVMF.fd [--kernel K --initrd I --append S --memory M]",
		Short: "Compute TDX MRTD and (with a kernel) RTMR0-3 offline",
		Long: `Computes the TDX MRTD of an OVMF image (the combined VARS+CODE flash image)
and, when a kernel is given, predicts RTMR0-3 of a QEMU direct boot with the
predicted CC event log. Each RTMR is marked predicted, profile (rests on the
captured CC event log given with --profile) or not-pinned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			rep, err := builder.MeasureTDX(req)
			if err != nil {
				return err
			}
			for _, n := range rep.Notes {
				logger().Info(n)
			}
			if f.json {
				return writeTDXJSON(cmd, rep)
			}
			return writeTDXText(cmd, rep, req.Kernel != nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ovmf, "ovmf", "", "OVMF flash image, combined VARS+CODE (e.g. OVMF.fd) (required)")
	fl.StringVar(&f.pageOrder, "page-order", "single", "order the VMM adds pages: single (add and extend page by page) or two-pass")
	fl.StringVar(&f.kernel, "kernel", "", "kernel (bzImage) given to QEMU -kernel")
	fl.StringVar(&f.initrd, "initrd", "", "initrd given to QEMU -initrd")
	fl.StringVar(&f.appendLine, "append", "", "kernel command line given to QEMU -append")
	fl.IntVar(&f.memory, "memory", 2048, "guest memory in MiB")
	fl.IntVar(&f.vcpus, "vcpus", 1, "vCPU count (affects RTMR0 only through a captured profile)")
	fl.StringVar(&f.machine, "machine", "q35", "QEMU machine type")
	fl.StringVar(&f.profile, "profile", "", "captured CC event log (CCEL data) of this QEMU version, machine and shape; pins RTMR0")
	fl.StringVar(&f.firmwareMeasures, "firmware-measures", "auto", "whether the firmware extends RTMRs (has TdTcg2Dxe): auto, yes or no")
	fl.StringVar(&f.stubMeasures, "stub-measures", "auto", "whether the kernel's EFI stub measures cmdline and initrd into RTMR2: auto (Linux >= 6.9), yes or no")
	fl.BoolVar(&f.json, "json", false, "print JSON (fields mrtd, rtmr0..rtmr3, ...)")
	_ = cmd.MarkFlagRequired("ovmf")
	return cmd
}

// request reads the files named by the flags.
func (f *measureTDXFlags) request() (builder.TDXRequest, error) {
	req := builder.TDXRequest{PageOrder: f.pageOrder, Cmdline: f.appendLine, MemoryMiB: f.memory, VCPUs: f.vcpus,
		Machine: f.machine, FirmwareMeasures: f.firmwareMeasures, StubMeasures: f.stubMeasures}
	read := func(path string, name *string, dst *[]byte) error {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		*name, *dst = filepath.Base(path), b
		return nil
	}
	var initrdName string
	for _, r := range []struct {
		path string
		name *string
		dst  *[]byte
	}{{f.ovmf, &req.FirmwareName, &req.Firmware}, {f.kernel, &req.KernelName, &req.Kernel}, {f.initrd, &initrdName, &req.Initrd}, {f.profile, &req.ProfileName, &req.Profile}} {
		if err := read(r.path, r.name, r.dst); err != nil {
			return req, err
		}
	}
	if req.Kernel == nil && (f.initrd != "" || f.appendLine != "") {
		return req, fmt.Errorf("--initrd and --append need --kernel")
	}
	return req, nil
}

func writeTDXText(cmd *cobra.Command, rep *builder.TDXReport, boot bool) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "mrtd  %s\n", rep.Values.MRTD)
	if !boot {
		return nil
	}
	for i := range 4 {
		v := rep.Values.RTMR[i]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "rtmr%d %s %s\n", i, v, rep.Values.RTMRBasis[i])
	}
	return nil
}

// tdxJSON is the --json output.
type tdxJSON struct {
	MRTD      string   `json:"mrtd"`
	RTMR0     string   `json:"rtmr0,omitempty"`
	RTMR1     string   `json:"rtmr1,omitempty"`
	RTMR2     string   `json:"rtmr2,omitempty"`
	RTMR3     string   `json:"rtmr3,omitempty"`
	RTMRBasis []string `json:"rtmr_basis,omitempty"`
	PageOrder string   `json:"page_order"`
	EventLog  any      `json:"event_log,omitempty"`
	Notes     []string `json:"notes,omitempty"`
}

func writeTDXJSON(cmd *cobra.Command, rep *builder.TDXReport) error {
	v := rep.Values
	out := tdxJSON{MRTD: v.MRTD, RTMR0: v.RTMR[0], RTMR1: v.RTMR[1], RTMR2: v.RTMR[2], RTMR3: v.RTMR[3],
		PageOrder: rep.PageOrder, Notes: rep.Notes}
	if v.RTMRBasis[0] != "" {
		out.RTMRBasis = v.RTMRBasis[:]
	}
	if len(v.EventLog) > 0 {
		out.EventLog = v.EventLog
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
