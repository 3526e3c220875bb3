package runner

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestBuildSpec(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0::/:/bin/sh\nweb:x:33:34::/var/www:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, tc := range []struct {
		name     string
		ic       v1.Config
		c        Config
		want     *Spec
		wantErrs bool
	}{
		{name: "defaults", ic: v1.Config{Cmd: []string{"/app"}},
			want: &Spec{Argv: []string{"/app"}, Env: []string{defaultPath}, Cwd: "/"}},
		{name: "args replace cmd, env overrides", ic: v1.Config{Entrypoint: []string{"e"}, Cmd: []string{"c"}, Env: []string{"PATH=/x", "A=1"}, User: "web", WorkingDir: "/srv"},
			c:    Config{Args: []string{"a"}, Env: []string{"A=2", "B=3"}, Hostname: "h"},
			want: &Spec{Argv: []string{"e", "a"}, Env: []string{"PATH=/x", "A=2", "B=3"}, UID: 33, GID: 34, Cwd: "/srv", Hostname: "h"}},
		{name: "numeric user and named group", ic: v1.Config{Cmd: []string{"x"}, User: "1234:staff"},
			want: &Spec{Argv: []string{"x"}, Env: []string{defaultPath}, UID: 1234, GID: 50, Cwd: "/"}},
		{name: "numeric uid:gid", ic: v1.Config{Cmd: []string{"x"}, User: "5:6"},
			want: &Spec{Argv: []string{"x"}, Env: []string{defaultPath}, UID: 5, GID: 6, Cwd: "/"}},
		{name: "unknown user", ic: v1.Config{Cmd: []string{"x"}, User: "nobody"}, wantErrs: true},
		{name: "no command", ic: v1.Config{}, wantErrs: true},
		{name: "relative workdir", ic: v1.Config{Cmd: []string{"x"}, WorkingDir: "srv"}, wantErrs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildSpec(root, &v1.ConfigFile{Config: tc.ic}, &tc.c)
			if tc.wantErrs {
				if err == nil {
					t.Fatalf("BuildSpec = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("spec (-want +got):\n%s", d)
			}
		})
	}
}
