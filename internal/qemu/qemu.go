// Package qemu boots guests in QEMU (TCG by default, always under a
// timeout) with OVMF and an optional swtpm, and parses the console records
// of cmd/mkcvm-init. It serves the integration tests (through
// internal/vmtest) and `mkcvm capture`.
//
// Networking is loopback only: with Net rules the guest gets QEMU user
// networking with restrict=on, so it reaches nothing but the guestfwd
// targets on 127.0.0.1.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Forward makes GuestAddr (an address in QEMU's user network, e.g.
// "10.0.2.100:80") reach 127.0.0.1:HostPort.
type Forward struct {
	GuestAddr string
	HostPort  int
}

// Options describes one boot. Zero values give a q35 machine with 1 GiB,
// one vCPU, no network and no TPM.
type Options struct {
	Code, Vars string // OVMF CODE and VARS template as pflash; Vars is copied fresh per boot
	BIOS       string // alternatively a combined image via -bios
	Kernel     string
	Initrd     string
	Append     string
	Disk       string // raw disk image attached as virtio-blk (read-only snapshot)
	MemoryMiB  int
	VCPUs      int
	Machine    string
	Accel      string // default "tcg" (KVM is not usable on the CI machines)
	TPM        bool   // swtpm TPM 2.0 with a fresh state directory, tpm-crb device
	Net        []Forward
	Timeout    time.Duration // default 3 minutes
	Extra      []string
	// NoDump skips parsing mkcvm-init's records (for guests whose init is
	// another program, such as mkcvm-runner); Result.Dump stays nil.
	NoDump bool
	// StopOn ends the boot early, StopGrace (default 5 s) after the console
	// first shows one of these strings (e.g. a firmware refusal that would
	// otherwise idle in the boot manager until Timeout). Such a stop is not
	// an error.
	StopOn    []string
	StopGrace time.Duration
}

// Result is what a boot produced.
type Result struct {
	Console string
	Dump    *Dump
	// Args is the QEMU command line that ran, for test logs.
	Args []string
}

// Dump holds the records mkcvm-init printed.
type Dump struct {
	Banner   bool
	Cmdline  string
	EventLog []byte
	CCEL     []byte
	// PCRs maps bank ("sha256", "sha384", "sha1") to index to value.
	PCRs map[string]map[int][]byte
	Done bool
}

// Banner is the line mkcvm-init prints once it runs as init.
const Banner = "mkcvm-init: booted"

// Tools lists the host programs a boot needs.
var Tools = []string{"qemu-system-x86_64", "swtpm"}

// Run boots one guest to completion (power-off, reboot or timeout) and
// returns its serial console output. dir is a scratch directory for the
// VARS copy, the swtpm state and the serial log; logf (may be nil) gets
// progress lines. A timeout is an error that still carries the console seen
// so far in the Result.
func Run(ctx context.Context, dir string, o Options, logf func(format string, args ...any)) (*Result, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	args, err := qemuArgs(dir, o)
	if err != nil {
		return nil, err
	}
	if o.TPM {
		sock, stop, err := startSwtpm(ctx, dir)
		if err != nil {
			return nil, err
		}
		defer stop()
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+sock,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-crb,tpmdev=tpm0")
	}
	args = append(args, o.Extra...)
	serial := filepath.Join(dir, "serial.log")
	args = append(args, "-serial", "file:"+serial)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	stopped := watchConsole(ctx, cmd, serial, o.StopOn, o.StopGrace)
	runErr := cmd.Wait()
	console, _ := os.ReadFile(serial)
	res := &Result{Console: string(console), Args: append([]string{"qemu-system-x86_64"}, args...)}
	logf("vmtest: boot took %s", time.Since(start).Round(time.Millisecond))
	if stopped.Load() {
		logf("vmtest: stopped after the console showed one of %q", o.StopOn)
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("qemu: no power-off within %s (last console lines: %s)", o.Timeout, tail(res.Console, 5))
	}
	if runErr != nil {
		return res, fmt.Errorf("qemu: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	if o.NoDump {
		return res, nil
	}
	if d, err := ParseDump(res.Console); err == nil {
		res.Dump = d
	} else {
		return res, err
	}
	return res, nil
}

// watchConsole kills cmd grace after the serial log first contains one of
// stop; the returned flag tells whether it did.
func watchConsole(ctx context.Context, cmd *exec.Cmd, serial string, stop []string, grace time.Duration) *atomic.Bool {
	var stopped atomic.Bool
	if len(stop) == 0 {
		return &stopped
	}
	if grace == 0 {
		grace = 5 * time.Second
	}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			b, _ := os.ReadFile(serial)
			for _, s := range stop {
				if bytes.Contains(b, []byte(s)) {
					select {
					case <-ctx.Done():
					case <-time.After(grace):
						stopped.Store(true)
						_ = cmd.Process.Kill()
					}
					return
				}
			}
		}
	}()
	return &stopped
}

func qemuArgs(dir string, o Options) ([]string, error) {
	machine, accel := o.Machine, o.Accel
	if machine == "" {
		machine = "q35"
	}
	if accel == "" {
		accel = "tcg"
	}
	mem, cpus := o.MemoryMiB, o.VCPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 1
	}
	args := []string{
		"-machine", machine + ",accel=" + accel, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
	}
	switch {
	case o.Code != "":
		vars := filepath.Join(dir, "vars.fd")
		if err := copyFile(o.Vars, vars); err != nil {
			return nil, fmt.Errorf("copying VARS template: %w", err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+o.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	case o.BIOS != "":
		args = append(args, "-bios", o.BIOS)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel)
	}
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	if o.Append != "" {
		args = append(args, "-append", o.Append)
	}
	if o.Disk != "" {
		args = append(args, "-drive", "if=none,id=disk0,format=raw,snapshot=on,file="+o.Disk,
			"-device", "virtio-blk-pci,drive=disk0,bootindex=1")
	}
	if len(o.Net) == 0 {
		args = append(args, "-net", "none")
	} else {
		nd := "user,id=n0,restrict=on"
		for _, f := range o.Net {
			if f.HostPort <= 0 || f.HostPort > 65535 {
				return nil, fmt.Errorf("forward %s: host port %d out of range", f.GuestAddr, f.HostPort)
			}
			nd += fmt.Sprintf(",guestfwd=tcp:%s-tcp:127.0.0.1:%d", f.GuestAddr, f.HostPort)
		}
		args = append(args, "-netdev", nd, "-device", "virtio-net-pci,netdev=n0,romfile=")
	}
	return args, nil
}

func startSwtpm(ctx context.Context, dir string) (string, func(), error) {
	state := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state, "--ctrl", "type=unixio,path="+sock,
		"--flags", "startup-clear")
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

// ParseDump parses mkcvm-init's console records. It fails when the banner
// is missing.
func ParseDump(console string) (*Dump, error) {
	d := &Dump{PCRs: map[string]map[int][]byte{}}
	var b64 *strings.Builder
	var target *[]byte
	for line := range strings.Lines(console) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case b64 != nil && (line == "MKCVM-EVENTLOG-END" || line == "MKCVM-CCEL-END"):
			raw, err := decodeB64(b64.String())
			if err != nil {
				return d, fmt.Errorf("console %s block: %w", line, err)
			}
			*target, b64 = raw, nil
		case b64 != nil:
			b64.WriteString(strings.TrimSpace(line))
		case line == Banner || strings.HasSuffix(line, Banner):
			d.Banner = true
		case strings.HasPrefix(line, "MKCVM-CMDLINE "):
			d.Cmdline = strings.TrimPrefix(line, "MKCVM-CMDLINE ")
		case strings.HasPrefix(line, "MKCVM-EVENTLOG-BEGIN"):
			b64, target = &strings.Builder{}, &d.EventLog
		case line == "MKCVM-CCEL-BEGIN":
			b64, target = &strings.Builder{}, &d.CCEL
		case strings.HasPrefix(line, "MKCVM-PCR "):
			if err := d.addPCR(line); err != nil {
				return d, err
			}
		case line == "MKCVM-DONE":
			d.Done = true
		}
	}
	if !d.Banner {
		return d, errors.New("console: no mkcvm-init banner")
	}
	return d, nil
}

func (d *Dump) addPCR(line string) error {
	f := strings.Fields(line)
	if len(f) != 4 {
		return fmt.Errorf("console: malformed PCR record %q", line)
	}
	idx, err := strconv.Atoi(f[2])
	if err != nil {
		return fmt.Errorf("console: PCR record %q: %w", line, err)
	}
	v, err := decodeHex(f[3])
	if err != nil {
		return fmt.Errorf("console: PCR record %q: %w", line, err)
	}
	if d.PCRs[f[1]] == nil {
		d.PCRs[f[1]] = map[int][]byte{}
	}
	d.PCRs[f[1]][idx] = v
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
