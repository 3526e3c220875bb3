package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/mkcvm/mkcvm/measure"
)

// ConfigFile is the runner configuration file inside the initrd. It is
// measured with the initrd; the kernel command line is measured by the
// platform. Nothing else configures the runner.
const ConfigFile = "/etc/mkcvm/runner.conf"

// Action is what the runner does when the workload ends or the runner fails.
type Action string

// Actions.
const (
	ActionPoweroff Action = "poweroff"
	ActionReboot   Action = "reboot"
	ActionHold     Action = "hold" // stay up (console stays readable), never run anything else
)

// Config is the runner configuration. Keys are written mkcvm.<key>=<value>,
// one per line in ConfigFile or space-separated on the kernel command line
// (double quotes allowed around values). Keys marked "list" may repeat and
// keep their order.
type Config struct {
	Image        string   // image: registry/repo@sha256:<hex> (required)
	ConfigDigest string   // config: expected sha256:<hex> of the image config (optional)
	Args         []string // arg (list): overrides the image's Cmd
	Env          []string // env (list): KEY=VALUE added to the image's Env
	Insecure     bool     // insecure_registry: plain HTTP to the registry (blobs are still verified by digest)

	Net     string       // net: none (default), dhcp, static
	Iface   string       // iface: network interface (default: first non-loopback)
	Addr    netip.Prefix // ip: static address with prefix length
	Gateway netip.Addr   // gw: static default gateway
	Modules []string     // module (list): kernel modules in the initrd to load, in order

	Clock string // clock: URL whose HTTP Date header sets the clock; empty leaves the clock alone

	TEE         string // tee: auto (default), tpm, snp, tdx, none (a comma list is allowed)
	AllowSetuid bool   // allow_setuid: keep setuid/setgid files from layers

	KBS         string // kbs: key-broker URL; POSTed the evidence before the workload starts
	KBSRequired bool   // kbs_required: refuse to start the workload if the key broker fails

	OnExit   Action // on_exit: after the workload exits (default poweroff)
	OnError  Action // on_error: after a runner failure (default poweroff)
	Hostname string // hostname: the workload's UTS hostname (default mkcvm)
	MaxBytes int64  // max_bytes: extracted image size limit (default 1 GiB)
}

// ErrConfig marks configuration errors.
var ErrConfig = errors.New("runner configuration")

type source struct{ name, text string }

// DefaultConfig returns the configuration before any key is applied: the
// defaults ParseConfig starts from and MarshalFile leaves out.
func DefaultConfig() *Config {
	return &Config{OnExit: ActionPoweroff, OnError: ActionPoweroff, Net: "none", TEE: "auto", Hostname: "mkcvm", MaxBytes: 1 << 30}
}

// ParseConfig reads the configuration from the initrd file's contents (file,
// may be empty) and the kernel command line. A key set in both places is an
// error: the runner fails closed rather than pick one.
func ParseConfig(file, cmdline string) (*Config, error) {
	c := DefaultConfig()
	seen := map[string]string{}
	var errs []error
	fileKVs, err := fileKeys(file)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		kvs  [][2]string
	}{{ConfigFile, fileKVs}, {"kernel command line", cmdlineKeys(cmdline)}} {
		for _, kv := range s.kvs {
			if prev, ok := seen[kv[0]]; ok && prev != s.name {
				errs = append(errs, fmt.Errorf("%w: mkcvm.%s set both in %s and %s", ErrConfig, kv[0], prev, s.name))
				continue
			}
			seen[kv[0]] = s.name
			if err := c.set(kv[0], kv[1]); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: mkcvm.%s: %w", ErrConfig, s.name, kv[0], err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if c.Image == "" {
		errs = append(errs, fmt.Errorf("%w: mkcvm.image is not set", ErrConfig))
	} else if _, err := measure.ImageDigest(c.Image); err != nil {
		errs = append(errs, fmt.Errorf("%w: mkcvm.image: %w", ErrConfig, err))
	}
	if c.Net == "static" && (!c.Addr.IsValid() || !c.Gateway.IsValid()) {
		errs = append(errs, fmt.Errorf("%w: mkcvm.net=static needs mkcvm.ip and mkcvm.gw", ErrConfig))
	}
	if c.KBSRequired && c.KBS == "" {
		errs = append(errs, fmt.Errorf("%w: mkcvm.kbs_required set without mkcvm.kbs", ErrConfig))
	}
	return errors.Join(errs...)
}

func (c *Config) set(k, v string) error {
	var err error
	switch k {
	case "image":
		c.Image = v
	case "config":
		c.ConfigDigest = v
	case "arg":
		c.Args = append(c.Args, v)
	case "env":
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q: want KEY=VALUE", v)
		}
		c.Env = append(c.Env, v)
	case "insecure_registry":
		c.Insecure, err = strconv.ParseBool(v)
	case "net":
		if !slices.Contains([]string{"none", "dhcp", "static"}, v) {
			return fmt.Errorf("%q: want none, dhcp or static", v)
		}
		c.Net = v
	case "iface":
		c.Iface = v
	case "ip":
		c.Addr, err = netip.ParsePrefix(v)
	case "gw":
		c.Gateway, err = netip.ParseAddr(v)
	case "module":
		c.Modules = append(c.Modules, v)
	case "clock":
		c.Clock = v
	case "tee":
		for t := range strings.SplitSeq(v, ",") {
			if !slices.Contains([]string{"auto", "tpm", "snp", "tdx", "none"}, t) {
				return fmt.Errorf("%q: want auto, tpm, snp, tdx or none", t)
			}
		}
		c.TEE = v
	case "allow_setuid":
		c.AllowSetuid, err = strconv.ParseBool(v)
	case "kbs":
		c.KBS = v
	case "kbs_required":
		c.KBSRequired, err = strconv.ParseBool(v)
	case "on_exit", "on_error":
		a := Action(v)
		if !slices.Contains([]Action{ActionPoweroff, ActionReboot, ActionHold}, a) {
			return fmt.Errorf("%q: want poweroff, reboot or hold", v)
		}
		if k == "on_exit" {
			c.OnExit = a
		} else {
			c.OnError = a
		}
	case "hostname":
		c.Hostname = v
	case "max_bytes":
		c.MaxBytes, err = strconv.ParseInt(v, 10, 64)
	default:
		return errors.New("unknown key")
	}
	return err
}

// fileKeys parses ConfigFile: mkcvm.key=value lines; blank lines and lines
// starting with # are ignored. The value is the rest of the line verbatim.
func fileKeys(text string) ([][2]string, error) {
	var kvs [][2]string
	sc := bufio.NewScanner(bytes.NewReader([]byte(text)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		key, isOurs := strings.CutPrefix(k, "mkcvm.")
		if !ok || !isOurs {
			return nil, fmt.Errorf("%w: %s line %d: want mkcvm.<key>=<value>", ErrConfig, ConfigFile, n)
		}
		kvs = append(kvs, [2]string{key, v})
	}
	return kvs, sc.Err()
}

// cmdlineKeys returns the mkcvm.* parameters of a kernel command line,
// splitting on spaces outside double quotes as the kernel's next_arg does
// and removing the quotes.
func cmdlineKeys(cmdline string) [][2]string {
	var kvs [][2]string
	for _, w := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		if key, ok := strings.CutPrefix(k, "mkcvm."); ok {
			kvs = append(kvs, [2]string{key, v})
		}
	}
	return kvs
}

func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// maxFileValue is the longest value CheckFileValue accepts: a ConfigFile
// line (mkcvm.<key>=<value>, the longest key, the line break) must fit the
// bufio.Scanner token limit ParseConfig reads lines with.
const maxFileValue = bufio.MaxScanTokenSize - len("mkcvm.insecure_registry=\n")

// CheckFileValue reports whether v can be written as a ConfigFile value
// that ParseConfig reads back verbatim: no line break, no trailing white
// space (ParseConfig trims lines) and not longer than a line may be.
func CheckFileValue(v string) error {
	switch {
	case strings.ContainsRune(v, '\n'):
		return fmt.Errorf("%q holds a line break", v)
	case strings.TrimRightFunc(v, unicode.IsSpace) != v:
		return fmt.Errorf("%q ends in white space, which %s lines drop", v, ConfigFile)
	case len(v) > maxFileValue:
		return fmt.Errorf("%d bytes is longer than a %s value may be (%d)", len(v), ConfigFile, maxFileValue)
	}
	return nil
}

// MarshalFile returns ConfigFile text that ParseConfig (with no kernel
// command line keys) reads back as c: one mkcvm.<key>=<value> line per
// setting that differs from DefaultConfig, in Config field order, list keys
// in their order, LF line ends. Start from DefaultConfig and set fields.
// The same c always gives the same bytes. A value that cannot be written
// (see CheckFileValue) is an error naming its key.
func (c *Config) MarshalFile() ([]byte, error) {
	d := DefaultConfig()
	var b bytes.Buffer
	var errs []error
	put := func(key, name, v string) {
		if err := CheckFileValue(v); err != nil {
			errs = append(errs, fmt.Errorf("%w: mkcvm.%s: %w", ErrConfig, name, err))
			return
		}
		fmt.Fprintf(&b, "mkcvm.%s=%s\n", key, v)
	}
	opt := func(key, v, def string) {
		if v != def {
			put(key, key, v)
		}
	}
	list := func(key string, vs []string) {
		for i, v := range vs {
			put(key, fmt.Sprintf("%s[%d]", key, i), v)
		}
	}
	opt("image", c.Image, d.Image)
	opt("config", c.ConfigDigest, d.ConfigDigest)
	list("arg", c.Args)
	list("env", c.Env)
	opt("insecure_registry", strconv.FormatBool(c.Insecure), strconv.FormatBool(d.Insecure))
	opt("net", c.Net, d.Net)
	opt("iface", c.Iface, d.Iface)
	if c.Addr.IsValid() {
		put("ip", "ip", c.Addr.String())
	}
	if c.Gateway.IsValid() {
		put("gw", "gw", c.Gateway.String())
	}
	list("module", c.Modules)
	opt("clock", c.Clock, d.Clock)
	opt("tee", c.TEE, d.TEE)
	opt("allow_setuid", strconv.FormatBool(c.AllowSetuid), strconv.FormatBool(d.AllowSetuid))
	opt("kbs", c.KBS, d.KBS)
	opt("kbs_required", strconv.FormatBool(c.KBSRequired), strconv.FormatBool(d.KBSRequired))
	opt("on_exit", string(c.OnExit), string(d.OnExit))
	opt("on_error", string(c.OnError), string(d.OnError))
	opt("hostname", c.Hostname, d.Hostname)
	opt("max_bytes", strconv.FormatInt(c.MaxBytes, 10), strconv.FormatInt(d.MaxBytes, 10))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
