package builder

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCompareDebVersions checks the comparison against dpkg
// --compare-versions (the reference implementation).
func TestCompareDebVersions(t *testing.T) {
	pairs := [][2]string{
		{"1.0", "1.0"}, {"1.0", "1.1"}, {"1.0-1", "1.0-2"}, {"1.0~rc1", "1.0"}, {"1:0.1", "2.0"},
		{"6.1.176-1", "6.1.177-1"}, {"6.1.176-1", "6.1.76-1"}, {"2022.11-6+deb12u2", "2022.11-6+deb12u1"},
		{"2022.11-6", "2022.11-6+deb12u1"}, {"1.0a", "1.0+"}, {"1.0", "1.0.0"}, {"0001", "1"}, {"1.0-1~bpo1", "1.0-1"},
	}
	_, err := exec.LookPath("dpkg")
	for _, p := range pairs {
		got := CompareDebVersions(p[0], p[1])
		if -got != CompareDebVersions(p[1], p[0]) {
			t.Errorf("%s vs %s: not antisymmetric", p[0], p[1])
		}
		if err != nil {
			continue
		}
		want := 0
		for _, c := range []struct {
			op string
			v  int
		}{{"lt", -1}, {"gt", 1}} {
			if exec.Command("dpkg", "--compare-versions", p[0], c.op, p[1]).Run() == nil {
				want = c.v
			}
		}
		if got != want {
			t.Errorf("CompareDebVersions(%q, %q) = %d, dpkg says %d", p[0], p[1], got, want)
		}
	}
}

func TestLock(t *testing.T) {
	debdir := t.TempDir()
	oldFile := []byte("old kernel")
	newFile := []byte("new kernel, longer")
	buildDeb(t, debdir, "linux-image-x", "6.1.1-1", "xz", map[string][]byte{"boot/vmlinuz": oldFile})
	buildDeb(t, debdir, "linux-image-x", "6.1.10-1", "zstd", map[string][]byte{"boot/vmlinuz": newFile})
	buildDeb(t, debdir, "linux-image-x", "6.1.9-1", "gzip", map[string][]byte{"boot/vmlinuz": []byte("middle")})
	text := `name = "l"
kernel = "kernel"
[firmware]
image = "kernel"
[inputs.kernel]
deb = "linux-image-x_6.1.1-1_amd64.deb"
package = "linux-image-x"
version = "6.1.1-1"
path = "boot/vmlinuz"
sha256 = "` + hexSum(oldFile) + `"
size = 10
[initrd]
compression = "none"
`
	r, err := ParseRecipe([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Lock(t.Context(), r, LockOptions{DebDirs: []string{debdir}})
	if err != nil {
		t.Fatal(err)
	}
	want := []PinChange{
		{"kernel", "version", "6.1.1-1", "6.1.10-1"},
		{"kernel", "deb", "linux-image-x_6.1.1-1_amd64.deb", "linux-image-x_6.1.10-1_amd64.deb"},
		{"kernel", "sha256", hexSum(oldFile), hexSum(newFile)},
		{"kernel", "size", "10", "18"},
	}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if got := cs[0].String(); got != `input "kernel": version: 6.1.1-1 -> 6.1.10-1` {
		t.Errorf("String() = %q", got)
	}
	updated, err := ApplyPinChanges([]byte(text), r, cs)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseRecipe(updated)
	if err != nil {
		t.Fatal(err)
	}
	if in := r2.Inputs["kernel"]; in.Version != "6.1.10-1" || in.SHA256 != hexSum(newFile) || in.Size != 18 || !strings.HasSuffix(in.Deb, "6.1.10-1_amd64.deb") {
		t.Errorf("updated input = %+v", in)
	}
	// The updated recipe resolves from the deb folder.
	if _, _, err := Resolve(t.Context(), r2, ResolveOptions{Fetcher: NewSourceFetcher(r2, nil, []string{debdir})}); err != nil {
		t.Errorf("resolving the re-pinned recipe: %v", err)
	}
	// Nothing to do once current; no deb at all is a clear error.
	if cs, err := Lock(t.Context(), r2, LockOptions{DebDirs: []string{debdir}}); err != nil || len(cs) != 0 {
		t.Errorf("second lock: %v %v", cs, err)
	}
	_, err = Lock(t.Context(), r2, LockOptions{DebDirs: []string{t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), `input "kernel": package: input missing: no .deb of linux-image-x`) {
		t.Errorf("err = %v", err)
	}
}
