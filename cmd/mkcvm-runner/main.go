// Command mkcvm-runner is the init of the mkcvm initrd: the attesting
// container runner. All logic lives in initrd/runner; this file only wires
// the boot steps together and maps typed errors to named outcomes and to the
// configured power action. See docs/runner.md.
package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkcvm/mkcvm/initrd/runner"
)

// workDir is where layers, the root and the share directory live (tmpfs).
const workDir = "/run/mkcvm-runner"

// Outcome names printed on the console as "mkcvm-runner: outcome <name>".
const (
	outcomeExited    = "workload-exited"
	outcomeConfig    = "config-error"
	outcomeTEE       = "tee-error"
	outcomeRefused   = "image-refused"
	outcomeMeasure   = "measure-error"
	outcomeKBS       = "kbs-refused"
	outcomeRunFailed = "run-error"
	outcomeBoot      = "boot-error"
)

type console struct{ w io.Writer }

// logf prints one stage-marked line; the stamp is CLOCK_BOOTTIME, seconds
// since the kernel started.
func (c console) logf(stage, format string, args ...any) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	fmt.Fprintf(c.w, "mkcvm-runner: [%5d.%03d] %-7s %s\n", ts.Sec, ts.Nsec/1e6, stage, fmt.Sprintf(format, args...))
}

func main() {
	if runner.IsChild() {
		runner.ReportChildError(runner.ChildMain())
		os.Exit(127)
	}
	if os.Getpid() != 1 {
		// It mounts over /run and /tmp and powers the machine off: never
		// on a host by accident.
		fmt.Fprintln(os.Stderr, "mkcvm-runner: refusing to run as anything but init (PID 1); it belongs in an mkcvm initrd")
		os.Exit(2)
	}
	// Libraries (u-root's dhclient) log packet dumps with the standard
	// logger; the console carries only stage-marked lines.
	log.SetOutput(io.Discard)
	mountErr := runner.MountBase()
	var out io.Writer = os.Stdout
	if f, err := runner.Console(); err == nil {
		out = f
	}
	con := console{out}
	con.logf(runner.StageBoot, "mkcvm-runner starting")
	if mountErr != nil {
		con.logf(runner.StageBoot, "mounts: %v", mountErr)
	}
	action := runner.ActionPoweroff
	outcome, code, cfg, err := run(context.Background(), con)
	if cfg != nil {
		action = cfg.OnError
		if outcome == outcomeExited {
			action = cfg.OnExit
		}
	}
	if err != nil {
		con.logf("outcome", "%s: %v", outcome, err)
	} else {
		con.logf("outcome", "%s code %d", outcome, code)
	}
	con.logf("outcome", "%s", action)
	if err := runner.Halt(action); err != nil {
		con.logf("outcome", "%s: %v; holding", action, err)
	}
	select {}
}

// run performs the boot and returns the outcome name, the workload's exit
// code and the error that ended it.
func run(ctx context.Context, con console) (string, int, *runner.Config, error) {
	cfg, err := runner.ReadConfig()
	if err != nil {
		return outcomeConfig, 0, nil, err
	}
	con.logf(runner.StageConfig, "image %s tee %s net %s", cfg.Image, cfg.TEE, cfg.Net)
	if err := runner.LoadModules(cfg.Modules); err != nil {
		return outcomeBoot, 0, cfg, err
	}
	if len(cfg.Modules) > 0 {
		// A module may have brought a mount point (configfs for configfs-tsm).
		if err := runner.MountBase(); err != nil {
			con.logf(runner.StageBoot, "mounts after modules: %v", err)
		}
	}
	tees, err := runner.OpenTEEs(cfg.TEE, runner.ProbeLinux)
	if err != nil {
		return outcomeTEE, 0, cfg, err
	}
	for _, t := range tees {
		con.logf(runner.StageTEE, "evidence source %s", t.Name())
		if r, ok := t.(interface{ Random(int) ([]byte, error) }); ok {
			if seed, err := r.Random(64); err == nil && runner.SeedEntropy(seed) == nil {
				con.logf(runner.StageBoot, "seeded the kernel pool with 64 bytes from the %s", t.Name())
			}
		}
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return outcomeBoot, 0, cfg, fmt.Errorf("generating the boot key: %w", err)
	}
	att, err := runner.NewAttester(tees, key)
	if err != nil {
		return outcomeBoot, 0, cfg, err
	}
	if err := runner.Network(ctx, cfg, func(f string, a ...any) { con.logf("net", f, a...) }); err != nil {
		return outcomeBoot, 0, cfg, err
	}
	con.logf("net", "up (%s)", cfg.Net)
	if cfg.Clock != "" {
		t, err := runner.SetClock(ctx, &http.Client{Timeout: 30 * time.Second}, cfg.Clock)
		if err != nil {
			return outcomeBoot, 0, cfg, err
		}
		con.logf("clock", "set to %s from %s", t.UTC().Format(time.RFC3339), cfg.Clock)
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return outcomeBoot, 0, cfg, err
	}
	r := &runner.Runner{Config: cfg, Attester: att, WorkDir: workDir, Logf: con.logf,
		Exec: &runner.NSExecutor{Out: con.w, Prefix: "workload"}}
	code, err := r.Run(ctx)
	if err != nil {
		return outcomeOf(err), 0, cfg, err
	}
	return outcomeExited, code, cfg, nil
}

// outcomeOf names a runner failure by its stage.
func outcomeOf(err error) string {
	se, ok := errors.AsType[*runner.StageError](err)
	if !ok {
		return outcomeBoot
	}
	switch se.Stage {
	case runner.StageFetch, runner.StageLayers, runner.StageExtract:
		return outcomeRefused
	case runner.StageMeasure:
		return outcomeMeasure
	case runner.StageKBS:
		return outcomeKBS
	case runner.StageRun:
		return outcomeRunFailed
	}
	return outcomeBoot
}
