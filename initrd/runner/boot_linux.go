package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bootMounts are the file systems the runner mounts first (in order).
var bootMounts = []struct {
	src, dst, fstype string
	flags            uintptr
	data             string
}{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"configfs", "/sys/kernel/config", "configfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// MountBase mounts /proc, /sys, /dev, /run, /tmp, securityfs (the TPM event
// log) and configfs (configfs-tsm). Already-mounted targets are fine.
func MountBase() error {
	var errs []error
	for _, m := range bootMounts {
		if strings.HasPrefix(m.dst, "/sys/") {
			// Mount points inside sysfs exist only when the file system is
			// built in (or its module loaded); sysfs refuses mkdir.
			if _, err := os.Stat(m.dst); err != nil {
				continue
			}
		} else if err := os.MkdirAll(m.dst, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dst, err))
		}
	}
	return errors.Join(errs...)
}

// Console opens /dev/console and makes it the process's stdout and stderr
// (an initramfs without a /dev/console node leaves init without them).
func Console() (*os.File, error) {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	for _, fd := range []int{1, 2} {
		if err := unix.Dup2(int(f.Fd()), fd); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// LoadModules loads kernel modules from files in the initrd, in order.
func LoadModules(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", p, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("loading module %s: %w", p, err)
		}
	}
	return nil
}

// SeedEntropy mixes seed into the kernel's pool (no entropy credit: the
// kernel's own sources decide readiness).
func SeedEntropy(seed []byte) error {
	if len(seed) == 0 {
		return nil
	}
	return os.WriteFile("/dev/urandom", seed, 0)
}

// Network brings up loopback and then the configured interface.
func Network(ctx context.Context, c *Config, logf func(format string, args ...any)) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	if c.Net == "none" {
		return nil
	}
	link, err := pickLink(c.Iface)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", link.Attrs().Name, err)
	}
	if c.Net == "static" {
		return static(link, c)
	}
	return dhcp(ctx, link, logf)
}

func pickLink(name string) (netlink.Link, error) {
	if name != "" {
		return netlink.LinkByName(name)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback == 0 && l.Type() == "device" {
			return l, nil
		}
	}
	return nil, errors.New("no network interface (is the NIC driver in mkcvm.module?)")
}

func static(link netlink.Link, c *Config) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: c.Addr.Addr().AsSlice(), Mask: net.CIDRMask(c.Addr.Bits(), c.Addr.Addr().BitLen())}}
	if err := netlink.AddrAdd(link, a); err != nil {
		return fmt.Errorf("adding %s to %s: %w", c.Addr, link.Attrs().Name, err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: c.Gateway.AsSlice()}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("adding default route via %s: %w", c.Gateway, err)
	}
	return nil
}

func dhcp(ctx context.Context, link netlink.Link, logf func(string, ...any)) error {
	cfg := dhclient.Config{Timeout: 5 * time.Second, Retries: 3}
	for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, cfg, 10*time.Second) {
		if r.Err != nil {
			return fmt.Errorf("DHCP on %s: %w", link.Attrs().Name, r.Err)
		}
		if err := r.Lease.Configure(); err != nil {
			return fmt.Errorf("applying the DHCP lease on %s: %w", link.Attrs().Name, err)
		}
		logf("%s: %s", link.Attrs().Name, r.Lease)
		return nil
	}
	return fmt.Errorf("DHCP on %s: no answer", link.Attrs().Name)
}

// SetClock sets the system clock from the Date header of url, the only
// clock source the runner accepts (mkcvm.clock).
func SetClock(ctx context.Context, hc *http.Client, url string) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("clock source %s: %w", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}, fmt.Errorf("clock source %s: Date header: %w", url, err)
	}
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return time.Time{}, fmt.Errorf("settimeofday: %w", err)
	}
	return t, nil
}

// ReadConfig reads ConfigFile (absent is fine) and /proc/cmdline.
func ReadConfig() (*Config, error) {
	file, err := os.ReadFile(ConfigFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return ParseConfig(string(file), string(cmdline))
}

// Halt powers off or reboots the machine; ActionHold blocks forever.
func Halt(a Action) error {
	unix.Sync()
	switch a {
	case ActionReboot:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	case ActionPoweroff:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	select {}
}

// ProbeLinux opens the guest's TEE devices.
func ProbeLinux(kind string) (TEE, error) {
	switch kind {
	case "tpm":
		return OpenTPM()
	case "snp":
		return OpenSNP()
	case "tdx":
		return OpenTDX()
	}
	return nil, fmt.Errorf("unknown TEE %q", kind)
}
