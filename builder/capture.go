package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mkcvm/mkcvm/internal/qemu"
	"github.com/mkcvm/mkcvm/measure"
)

// CaptureRequest describes one VM shape to boot for a platform profile.
type CaptureRequest struct {
	Code, Vars     string // OVMF CODE and VARS template files
	Kernel, Initrd string // the initrd's /init must print mkcvm-init's records
	Append         string
	Machine        string // q35 or pc
	MemoryMiB      int
	VCPUs          int
	Accel          string // tcg (default) or kvm
	OVMFVersion    string // recorded as the firmware build name
	Logger         *slog.Logger
}

// captureDevices are the QEMU arguments that add devices in a capture run
// (recorded in the profile).
var captureDevices = []string{"-tpmdev emulator,id=tpm0,chardev=chrtpm", "-device tpm-crb,tpmdev=tpm0", "-net none"}

// CaptureProfile boots the shape once in QEMU (direct boot, -net none,
// OVMF CODE + a fresh VARS copy as pflash, swtpm on tpm-crb) and returns
// its platform profile: the firmware event log and PCRs the guest's init
// dumped, with the QEMU/swtpm versions, firmware digests and shape. The
// caller's context bounds the boot.
func CaptureProfile(ctx context.Context, r CaptureRequest) (*measure.Profile, error) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.Code == "" || r.Vars == "" || r.Kernel == "" {
		return nil, fmt.Errorf("capture: OVMF CODE, OVMF VARS and kernel are required (got code %q, vars %q, kernel %q)", r.Code, r.Vars, r.Kernel)
	}
	read := func(name, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", name, err)
		}
		return b, nil
	}
	var code, vars, kernel, initrd []byte
	for _, f := range []struct {
		name, path string
		dst        *[]byte
	}{{"OVMF CODE", r.Code, &code}, {"OVMF VARS", r.Vars, &vars}, {"kernel", r.Kernel, &kernel}, {"initrd", r.Initrd, &initrd}} {
		b, err := read(f.name, f.path)
		if err != nil {
			return nil, err
		}
		*f.dst = b
	}
	dir, err := os.MkdirTemp("", "mkcvm-capture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	log.Info("booting shape", "machine", r.Machine, "memory_mib", r.MemoryMiB, "vcpus", r.VCPUs)
	res, err := qemu.Run(ctx, dir, qemu.Options{
		Code: r.Code, Vars: r.Vars, Kernel: r.Kernel, Initrd: r.Initrd, Append: r.Append,
		Machine: r.Machine, MemoryMiB: r.MemoryMiB, VCPUs: r.VCPUs, Accel: r.Accel, TPM: true,
		Timeout: deadline(ctx),
	}, func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) })
	if err != nil {
		return nil, fmt.Errorf("capture boot: %w", err)
	}
	d := res.Dump
	if len(d.EventLog) == 0 {
		return nil, fmt.Errorf("capture: no event log on the console (does the initrd's /init print mkcvm-init's MKCVM-EVENTLOG records?)")
	}
	p := &measure.Profile{Schema: measure.ProfileSchema, QEMUVersion: toolVersion("qemu-system-x86_64", "--version"),
		SwtpmVersion: toolVersion("swtpm", "--version"), OVMFCodeSHA256: sum256(code), OVMFVarsSHA256: sum256(vars),
		OVMFVersion: r.OVMFVersion, Machine: r.Machine, MemoryMiB: r.MemoryMiB, VCPUs: r.VCPUs, Devices: captureDevices,
		KernelSHA256: sum256(kernel), InitrdSize: int64(len(initrd)), Cmdline: r.Append, EventLog: d.EventLog,
		PCRs: hexPCRs(d.PCRs)}
	if initrd != nil {
		p.InitrdSHA256 = sum256(initrd)
	}
	return p, nil
}

// deadline turns the context's deadline into the boot timeout (0 = the
// qemu package's default).
func deadline(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 0
}

func hexPCRs(in map[string]map[int][]byte) map[string]map[string]string {
	out := map[string]map[string]string{}
	for bank, m := range in {
		out[bank] = map[string]string{}
		for i, v := range m {
			out[bank][strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	}
	return out
}

func sum256(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func toolVersion(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(l)
}
