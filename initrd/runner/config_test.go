package runner

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
