package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// childEnv carries the Spec (JSON) from the runner to its re-executed copy,
// which sets up the namespaces' mounts and then execs the workload.
const childEnv = "MKCVM_RUNNER_CHILD"

// IsChild reports whether this process is the runner's namespace child.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// NSExecutor runs the workload through a re-executed copy of the current
// binary (Self, default /proc/self/exe) in new mount, PID, UTS and IPC
// namespaces. Its stdout and stderr reach Out line by line, prefixed.
type NSExecutor struct {
	Self   string
	Args   []string // argv of the re-executed binary (tests pass -test.run)
	Out    io.Writer
	Prefix string // e.g. "workload"
}

// Run implements Executor.
func (x *NSExecutor) Run(ctx context.Context, s *Spec) (int, error) {
	js, err := json.Marshal(s)
	if err != nil {
		return 0, err
	}
	self := x.Self
	if self == "" {
		self = "/proc/self/exe"
	}
	cmd := exec.CommandContext(ctx, self, x.Args...)
	cmd.Env = []string{childEnv + "=" + string(js)}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		Pdeathsig:  syscall.SIGKILL,
	}
	// The child reports setup failures on fd 3, which is close-on-exec
	// once the workload starts: an empty read means the exec happened.
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer errR.Close()
	cmd.ExtraFiles = []*os.File{errW}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	err = cmd.Start()
	errW.Close()
	if err != nil {
		return 0, fmt.Errorf("starting the namespace child: %w", err)
	}
	setup := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(io.LimitReader(errR, 4096)); setup <- b }()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, p := range []struct {
		r   io.Reader
		tag string
	}{{stdout, x.Prefix + ": "}, {stderr, x.Prefix + "[stderr]: "}} {
		wg.Go(func() { copyLines(p.r, x.Out, p.tag, &mu) })
	}
	wg.Wait()
	err = cmd.Wait()
	if msg := <-setup; len(msg) > 0 {
		return 0, fmt.Errorf("%w: %s", ErrSetup, msg)
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// copyLines copies r to w line by line with a prefix; long lines are cut at
// 64 KiB into several lines.
func copyLines(r io.Reader, w io.Writer, prefix string, mu *sync.Mutex) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			mu.Lock()
			fmt.Fprintf(w, "%s%s\n", prefix, strings.TrimRight(string(line), "\r\n"))
			mu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// ErrSetup marks failures of the namespace child before the workload's exec.
var ErrSetup = errors.New("workload setup")

// childErrFD is the child's end of the setup-error pipe (ExtraFiles[0]).
const childErrFD = 3

// ReportChildError sends a ChildMain failure to the runner.
func ReportChildError(err error) {
	f := os.NewFile(childErrFD, "setup-errors")
	fmt.Fprint(f, err)
	f.Close()
}

// ChildMain is the namespace child: it makes the mount namespace private,
// mounts a minimal /proc and /dev and the share directory into the root,
// moves the root over "/", chroots, sets the hostname, drops to the image's
// user and execs the workload. It returns only on failure.
func ChildMain() error {
	unix.CloseOnExec(childErrFD)
	var s Spec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &s); err != nil {
		return fmt.Errorf("decoding spec: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount(s.Root, s.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding the root: %w", err)
	}
	if err := mountInside(&s); err != nil {
		return err
	}
	if err := enterRoot(s.Root); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := dropPrivileges(&s); err != nil {
		return err
	}
	if err := os.Chdir(s.Cwd); err != nil {
		return fmt.Errorf("working dir: %w", err)
	}
	argv0, err := lookPath(s.Argv[0], s.Env)
	if err != nil {
		return err
	}
	return fmt.Errorf("exec %s: %w", argv0, unix.Exec(argv0, s.Argv, s.Env))
}

// devNodes are the only devices inside the workload's /dev.
var devNodes = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

func mountInside(s *Spec) error {
	in := func(p string) string { return filepath.Join(s.Root, p) }
	for _, d := range []string{"proc", "dev", "tmp", strings.TrimPrefix(ShareMount, "/")} {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return err
		}
	}
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", in("proc"), "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", in("dev"), "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=755,size=64k"},
		{s.Share, in(ShareMount), "", unix.MS_BIND, ""},
	}
	for _, m := range mounts {
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mounting %s: %w", m.dst, err)
		}
	}
	for _, n := range devNodes {
		if err := unix.Mknod(in("dev/"+n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", n.name, err)
		}
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}} {
		if err := os.Symlink(l[0], in("dev/"+l[1])); err != nil {
			return err
		}
	}
	return nil
}

// enterRoot makes root the process's "/" the way switch_root does (pivot_root
// is not allowed when the old root is the initramfs): move the mount over "/"
// and chroot into it.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

func dropPrivileges(s *Spec) error {
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", s.GID, err)
	}
	if err := unix.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", s.UID, err)
	}
	return nil
}

// lookPath finds an executable the way execvp does, with the PATH of env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	p := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			p = v
		}
	}
	for dir := range strings.SplitSeq(p, ":") {
		if dir == "" {
			dir = "."
		}
		c := path.Join(dir, name)
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH %q", name, p)
}
