package spec

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseConfig(t *testing.T) {
	img := "10.0.2.100/test/hello@sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, file, cmdline string
		want                *Config
		err                 string
	}{
		{
			name:    "file and cmdline",
			file:    "# runner\nmkcvm.image=" + img + "\nmkcvm.arg=two words\nmkcvm.arg=x\nmkcvm.env=A=b c\nmkcvm.module=/lib/modules/virtio.ko\n",
			cmdline: `console=ttyS0 mkcvm.net=static mkcvm.ip=10.0.2.15/24 mkcvm.gw=10.0.2.2 mkcvm.on_exit=reboot mkcvm.hostname="my host"` + "\n",
			want: &Config{Image: img, Args: []string{"two words", "x"}, Env: []string{"A=b c"}, Modules: []string{"/lib/modules/virtio.ko"},
				Net: "static", Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
				TEE: "auto", OnExit: ActionReboot, OnError: ActionPoweroff, Hostname: "my host", MaxBytes: 1 << 30},
		},
		{name: "tag refused", cmdline: "mkcvm.image=r.io/app:latest", err: "tags are refused"},
		{name: "missing image", cmdline: "quiet", err: "mkcvm.image is not set"},
		{name: "set twice", file: "mkcvm.image=" + img, cmdline: "mkcvm.image=" + img, err: "set both in"},
		{name: "unknown key", cmdline: "mkcvm.image=" + img + " mkcvm.imgae=x", err: "mkcvm.imgae: unknown key"},
		{name: "bad action", cmdline: "mkcvm.image=" + img + " mkcvm.on_exit=explode", err: "want poweroff, reboot or hold"},
		{name: "static without ip", cmdline: "mkcvm.image=" + img + " mkcvm.net=static", err: "needs mkcvm.ip"},
		{name: "bad file line", file: "image=" + img, err: "line 1"},
		{name: "kbs_required without kbs", cmdline: "mkcvm.image=" + img + " mkcvm.kbs_required=1", err: "without mkcvm.kbs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.file, tc.cmdline)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v, want an ErrConfig containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("mkcvm.image=r/a@sha256:"+strings.Repeat("0", 64), `mkcvm.arg="a b" x`)
	f.Fuzz(func(t *testing.T, file, cmdline string) {
		if len(file)+len(cmdline) > 1<<14 {
			return
		}
		ParseConfig(file, cmdline) // must not panic
	})
}

func TestMarshalFile(t *testing.T) {
	img := "10.0.2.100/test/hello@sha256:" + strings.Repeat("ab", 32)
	cfg := "sha256:" + strings.Repeat("cd", 32)
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want string // exact file text, or the error's substring with err
		err  bool
	}{
		{name: "defaults", set: func(c *Config) {}, want: ""},
		{name: "workload", set: func(c *Config) {
			c.Image, c.ConfigDigest = img, cfg
			c.Args = []string{"--from", " leading space kept", ""}
			c.Env = []string{"GREETING=hello e2e", "EMPTY="}
		}, want: "mkcvm.image=" + img + "\nmkcvm.config=" + cfg +
			"\nmkcvm.arg=--from\nmkcvm.arg= leading space kept\nmkcvm.arg=\nmkcvm.env=GREETING=hello e2e\nmkcvm.env=EMPTY=\n"},
		{name: "every key", set: func(c *Config) {
			c.Image, c.Insecure, c.Net, c.Iface = img, true, "static", "eth0"
			c.Addr, c.Gateway = netip.MustParsePrefix("10.0.2.15/24"), netip.MustParseAddr("10.0.2.2")
			c.Modules = []string{"/lib/modules/a.ko", "/lib/modules/b.ko"}
			c.Clock, c.TEE, c.AllowSetuid = "http://10.0.2.100/", "tpm,snp", true
			c.KBS, c.KBSRequired = "http://10.0.2.100:8080", true
			c.OnExit, c.OnError, c.Hostname, c.MaxBytes = ActionHold, ActionReboot, "", 0
		}, want: "mkcvm.image=" + img + "\nmkcvm.insecure_registry=true\nmkcvm.net=static\nmkcvm.iface=eth0\n" +
			"mkcvm.ip=10.0.2.15/24\nmkcvm.gw=10.0.2.2\nmkcvm.module=/lib/modules/a.ko\nmkcvm.module=/lib/modules/b.ko\n" +
			"mkcvm.clock=http://10.0.2.100/\nmkcvm.tee=tpm,snp\nmkcvm.allow_setuid=true\nmkcvm.kbs=http://10.0.2.100:8080\n" +
			"mkcvm.kbs_required=true\nmkcvm.on_exit=hold\nmkcvm.on_error=reboot\nmkcvm.hostname=\nmkcvm.max_bytes=0\n"},
		{name: "line break", set: func(c *Config) { c.Image, c.Args = img, []string{"a", "b\nmkcvm.tee=none"} },
			want: `mkcvm.arg[1]: "b\nmkcvm.tee=none" holds a line break`, err: true},
		{name: "trailing space", set: func(c *Config) { c.Image, c.Env = img, []string{"A=b\t"} },
			want: `mkcvm.env[0]: "A=b\t" ends in white space`, err: true},
		{name: "carriage return", set: func(c *Config) { c.Image, c.Hostname = img, "h\r" },
			want: `mkcvm.hostname: "h\r" ends in white space`, err: true},
		{name: "too long", set: func(c *Config) { c.Image = strings.Repeat("a", 1<<16) },
			want: `mkcvm.image: 65536 bytes is longer than`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.set(c)
			b, err := c.MarshalFile()
			if tc.err {
				if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("MarshalFile err = %v, want an ErrConfig containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(b)); d != "" {
				t.Errorf("MarshalFile (-want +got):\n%s", d)
			}
			if c.Image == "" {
				return // ParseConfig requires an image
			}
			got, err := ParseConfig(string(b), "")
			if err != nil {
				t.Fatalf("ParseConfig(MarshalFile): %v", err)
			}
			if d := cmp.Diff(c, got, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); d != "" {
				t.Errorf("round trip (-marshaled +parsed):\n%s", d)
			}
		})
	}
}

// FuzzMarshalFile checks that every configuration file ParseConfig accepts
// marshals to a file that parses to the same configuration.
func FuzzMarshalFile(f *testing.F) {
	img := "r/a@sha256:" + strings.Repeat("0", 64)
	f.Add("mkcvm.image=" + img + "\nmkcvm.arg= x\nmkcvm.env=A=\nmkcvm.hostname=\nmkcvm.max_bytes=0\n")
	f.Add("mkcvm.image=" + img + "\nmkcvm.net=static\nmkcvm.ip=fe80::1/64\nmkcvm.gw=fe80::2%eth0\nmkcvm.tee=tpm,none\n")
	f.Add("# c\n\nmkcvm.image=" + img + "\r\nmkcvm.kbs=http://k\nmkcvm.kbs_required=1\nmkcvm.on_exit=hold\n")
	f.Fuzz(func(t *testing.T, file string) {
		if len(file) > 1<<14 {
			return
		}
		c, err := ParseConfig(file, "")
		if err != nil {
			return
		}
		b, err := c.MarshalFile()
		if err != nil {
			t.Fatalf("MarshalFile of a parsed config: %v\nfile: %q", err, file)
		}
		got, err := ParseConfig(string(b), "")
		if err != nil {
			t.Fatalf("ParseConfig(MarshalFile): %v\nmarshaled: %q", err, b)
		}
		if d := cmp.Diff(c, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); d != "" {
			t.Errorf("round trip (-parsed +reparsed):\n%s\nfile: %q", d, file)
		}
	})
}
