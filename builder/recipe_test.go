package builder

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const validRecipe = `
name = "test"
epoch = 1700000000
cmdline = "console=ttyS0 panic=-1"
kernel = "kernel"

[firmware]
image = "ovmf"
code = "code"
vars = "vars"

[inputs.ovmf]
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
size = 2097152
deb = "ovmf_2022.11-6+deb12u2_all.deb"
path = "usr/share/ovmf/OVMF.fd"
package = "ovmf"
version = "2022.11-6+deb12u2"

[inputs.code]
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
size = 10
file = "fw/code.fd"

[inputs.vars]
sha256 = "3333333333333333333333333333333333333333333333333333333333333333"
size = 10
url = "https://example.org/vars.fd"

[inputs.kernel]
sha256 = "4444444444444444444444444444444444444444444444444444444444444444"
size = 10
oci = "registry.example/kernels@sha256:5555555555555555555555555555555555555555555555555555555555555555"
layer = "sha256:6666666666666666666666666666666666666666666666666666666666666666"

[initrd]
compression = "zstd"
commands = ["github.com/u-root/u-root/cmds/core/ls"]

[[initrd.file]]
path = "etc/motd"
contents = "hello\n"
mode = "0644"

[[initrd.file]]
path = "etc/ovmf"
input = "ovmf"
mode = "0600"

[initrd.workload]
image = "registry.example/app@sha256:7777777777777777777777777777777777777777777777777777777777777777"
env = ["A=b"]
config = "sha256:8888888888888888888888888888888888888888888888888888888888888888"

[[shape]]
name = "tpm"
platform = "tpm"
vcpus = 1
machine = "q35"
memory_mib = 1024

[[shape]]
name = "snp"
platform = "snp"
vcpus = 1
vcpu_type = "EPYC-v4"
vmm = "qemu"
vmm_version = "7.2"
guest_features = "0x1"
policy = "0x30000"

[[shape]]
name = "tdx"
platform = "tdx"
vcpus = 2
memory_mib = 2048
page_order = "two-pass"
`

func TestParseRecipeValid(t *testing.T) {
	r, err := ParseRecipe([]byte(validRecipe))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Inputs["ovmf"].Path, "usr/share/ovmf/OVMF.fd"; got != want {
		t.Errorf("ovmf path = %q, want %q", got, want)
	}
	if got := len(r.Shapes); got != 3 {
		t.Errorf("%d shapes, want 3", got)
	}
	if got, want := r.Initrd.Files[1].FileMode(), uint32(0o600); got != want {
		t.Errorf("mode = %o, want %o", got, want)
	}
	if diff := cmp.Diff([]string{"github.com/u-root/u-root/cmds/core/ls"}, r.Initrd.Commands); diff != "" {
		t.Error(diff)
	}
}

// edit returns validRecipe with old replaced by new (old must occur once).
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if strings.Count(validRecipe, old) != 1 {
		t.Fatalf("edit: %q occurs %d times", old, strings.Count(validRecipe, old))
	}
	return strings.Replace(validRecipe, old, new, 1)
}

func TestParseRecipeErrors(t *testing.T) {
	const sha1 = `sha256 = "1111111111111111111111111111111111111111111111111111111111111111"`
	const kernelSrc = `oci = "registry.example/kernels@sha256:5555555555555555555555555555555555555555555555555555555555555555"`
	const kernelLayer = `layer = "sha256:6666666666666666666666666666666666666666666666666666666666666666"`
	tests := []struct {
		name     string
		old, new string
		want     string // substring of the error
	}{
		{"unknown top key", `epoch = 1700000000`, "epoch = 1700000000\nepochs = 1", `epochs: unknown key`},
		{"unknown input key", `size = 2097152`, "size = 2097152\nsha265 = \"x\"", `inputs.ovmf.sha265: unknown key`},
		{"unknown shape key", `vcpus = 2`, "vcpus = 2\nvcpu = 2", `shape.vcpu: unknown key`},
		{"syntax", `epoch = 1700000000`, `epoch = `, `line 3`},
		{"wrong type", `epoch = 1700000000`, `epoch = "1700000000"`, `epoch`},
		{"name", `name = "test"`, `name = "Test Recipe"`, `name: must match`},
		{"epoch negative", `epoch = 1700000000`, `epoch = -1`, `epoch: must not be negative`},
		{"cmdline control", `cmdline = "console=ttyS0 panic=-1"`, `cmdline = "a\nb"`, `cmdline: control character 0x0a`},
		{"sha256 upper", sha1, `sha256 = "A111111111111111111111111111111111111111111111111111111111111111"`, `input "ovmf": sha256: must be 64 lowercase hex digits`},
		{"sha256 short", sha1, `sha256 = "11"`, `input "ovmf": sha256: must be 64 lowercase hex digits`},
		{"size zero", `size = 2097152`, `size = 0`, `input "ovmf": size: must be a positive byte count`},
		{"two sources", `file = "fw/code.fd"`, "file = \"fw/code.fd\"\nurl = \"https://x/y\"", `input "code": source: exactly one of file, url, deb, oci must be set, got 2`},
		{"no source", `file = "fw/code.fd"`, ``, `input "code": source: exactly one`},
		{"file escapes", `file = "fw/code.fd"`, `file = "../code.fd"`, `input "code": file: "../code.fd" escapes the recipe folder`},
		{"file absolute", `file = "fw/code.fd"`, `file = "/etc/passwd"`, `input "code": file: must be a relative`},
		{"file unclean", `file = "fw/code.fd"`, `file = "fw/../fw/code.fd"`, `input "code": file: must be a clean path`},
		{"url http", `url = "https://example.org/vars.fd"`, `url = "http://example.org/vars.fd"`, `input "vars": url: must be an https URL`},
		{"deb escapes", `deb = "ovmf_2022.11-6+deb12u2_all.deb"`, `deb = "../x.deb"`, `input "ovmf": deb: "../x.deb" escapes`},
		{"deb without path", `path = "usr/share/ovmf/OVMF.fd"`, ``, `input "ovmf": path: required with deb`},
		{"deb path escapes", `path = "usr/share/ovmf/OVMF.fd"`, `path = "../OVMF.fd"`, `input "ovmf": path: "../OVMF.fd" escapes`},
		{"path with file", `file = "fw/code.fd"`, "file = \"fw/code.fd\"\npath = \"a\"", `input "code": path: only valid with deb or oci`},
		{"package name", `package = "ovmf"`, `package = "OVMF!"`, `input "ovmf": package: must be a Debian package name`},
		{"version", `version = "2022.11-6+deb12u2"`, `version = "latest please"`, `input "ovmf": version: must be a Debian version`},
		{"package without deb", `file = "fw/code.fd"`, "file = \"fw/code.fd\"\npackage = \"x\"\nversion = \"1\"", `input "code": package: only valid with deb`},
		{"oci tag", kernelSrc, `oci = "registry.example/kernels:latest"`, `input "kernel": oci: must be a reference pinned by digest`},
		{"oci neither", kernelLayer, ``, `input "kernel": path: exactly one of path`},
		{"oci layer", kernelLayer, `layer = "sha256:abc"`, `input "kernel": layer: must be sha256:`},
		{"layer without oci", `file = "fw/code.fd"`, "file = \"fw/code.fd\"\nlayer = \"sha256:6666666666666666666666666666666666666666666666666666666666666666\"", `input "code": layer: only valid with oci`},
		{"input name", `[inputs.code]`, `[inputs.Code]`, `input "Code": name: must match`},
		{"firmware image ref", `image = "ovmf"`, `image = "nope"`, `firmware: image: names no input: "nope"`},
		{"firmware none", "image = \"ovmf\"\ncode = \"code\"\nvars = \"vars\"", ``, `firmware: image: one of image`},
		{"firmware code without vars", `vars = "vars"`, ``, `firmware: vars: code and vars go together`},
		{"kernel missing", `kernel = "kernel"`, ``, `kernel: required`},
		{"kernel ref", `kernel = "kernel"`, `kernel = "vmlinuz"`, `kernel: names no input: "vmlinuz"`},
		{"compression", `compression = "zstd"`, `compression = "xz"`, `initrd: compression: must be one of [gzip none zstd], got "xz"`},
		{"init package", `compression = "zstd"`, "compression = \"zstd\"\ninit = \"not a package\"", `initrd: init: must be a Go package path`},
		{"command package", `commands = ["github.com/u-root/u-root/cmds/core/ls"]`, `commands = ["ls"]`, `initrd: commands[0]: must be a Go package path`},
		{"command duplicate", `commands = ["github.com/u-root/u-root/cmds/core/ls"]`, `commands = ["github.com/u-root/u-root/cmds/core/ls", "example.com/x/ls"]`, `initrd: commands[1]: a second command named "ls"`},
		{"file path escapes", `path = "etc/motd"`, `path = "../etc/motd"`, `initrd.file[0]: path: "../etc/motd" escapes`},
		{"file path init", `path = "etc/motd"`, `path = "init"`, `initrd.file[0]: path: "init" is already in the initrd`},
		{"file path command", `path = "etc/motd"`, `path = "bin/ls"`, `initrd.file[0]: path: "bin/ls" is already in the initrd`},
		{"file path duplicate", `path = "etc/ovmf"`, `path = "etc/motd"`, `initrd.file[1]: path: "etc/motd" is already in the initrd`},
		{"file mode decimal", `mode = "0644"`, `mode = "644x"`, `initrd.file[0]: mode: must be an octal permission`},
		{"file mode 8", `mode = "0644"`, `mode = "0648"`, `initrd.file[0]: mode: must be an octal permission`},
		{"file both", `contents = "hello\n"`, "contents = \"hello\\n\"\ninput = \"ovmf\"", `initrd.file[0]: input: exactly one of input and contents`},
		{"file input ref", `input = "ovmf"`, `input = "nope"`, `initrd.file[1]: input: names no input: "nope"`},
		{"workload tag", `image = "registry.example/app@sha256:7777777777777777777777777777777777777777777777777777777777777777"`, `image = "registry.example/app:v1"`, `initrd.workload: image: must be a reference pinned by digest`},
		{"workload env", `env = ["A=b"]`, `env = ["A"]`, `initrd.workload: env[0]: must be NAME=value`},
		{"shape name dup", `name = "tdx"`, `name = "snp"`, `shape "snp": name: duplicate shape name`},
		{"shape name", `name = "tdx"`, `name = "TDX shape"`, `name: must match`},
		{"platform", `platform = "tdx"`, `platform = "cca"`, `shape "tdx": platform: must be one of`},
		{"vcpus", `vcpus = 2`, `vcpus = 0`, `shape "tdx": vcpus: must be 1..512`},
		{"vcpu_type", `vcpu_type = "EPYC-v4"`, `vcpu_type = "EPYC v4"`, `shape "snp": vcpu_type: must match`},
		{"vcpu both", `vcpu_type = "EPYC-v4"`, "vcpu_type = \"EPYC-v4\"\nvcpu_sig = \"0xa00f11\"", `shape "snp": vcpu_sig: give vcpu_type or vcpu_sig`},
		{"vcpu_sig", `vcpu_type = "EPYC-v4"`, `vcpu_sig = "a00f11"`, `shape "snp": vcpu_sig: must be 0x-prefixed hex`},
		{"vmm", `vmm = "qemu"`, `vmm = "kvmtool"`, `shape "snp": vmm: must be one of`},
		{"vmm_version", `vmm_version = "7.2"`, `vmm_version = "seven"`, `shape "snp": vmm_version: must be a dotted version`},
		{"guest_features", `guest_features = "0x1"`, `guest_features = "1"`, `shape "snp": guest_features: must be 0x-prefixed hex`},
		{"policy", `policy = "0x30000"`, `policy = "0x"`, `shape "snp": policy: must be 0x-prefixed hex`},
		{"machine", `machine = "q35"`, `machine = "Q 35"`, `shape "tpm": machine: must match`},
		{"memory", `memory_mib = 1024`, `memory_mib = -1`, `shape "tpm": memory_mib: must be 0`},
		{"page_order", `page_order = "two-pass"`, `page_order = "random"`, `shape "tdx": page_order: must be one of`},
		{"page_order not tdx", `guest_features = "0x1"`, "guest_features = \"0x1\"\npage_order = \"single\"", `shape "snp": page_order: only valid for platform tdx`},
		{"profile", `page_order = "two-pass"`, "page_order = \"two-pass\"\nprofile = \"nope\"", `shape "tdx": profile: names no input: "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipe([]byte(edit(t, tc.old, tc.new)))
			if err == nil {
				t.Fatalf("ParseRecipe succeeded, want error containing %q", tc.want)
			}
			if !errors.Is(err, ErrRecipe) {
				t.Errorf("error %v does not wrap ErrRecipe", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseRecipeReportsAll(t *testing.T) {
	s := strings.Replace(validRecipe, `vcpus = 2`, `vcpus = 0`, 1)
	s = strings.Replace(s, `compression = "zstd"`, `compression = "lz4"`, 1)
	_, err := ParseRecipe([]byte(s))
	for _, want := range []string{"vcpus", "compression"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestParseRecipeTooLarge(t *testing.T) {
	_, err := ParseRecipe(make([]byte, MaxRecipeSize+1))
	if !errors.Is(err, ErrRecipe) {
		t.Fatalf("err = %v, want ErrRecipe", err)
	}
}

// FuzzParseRecipe: parsing never panics, and an accepted recipe stays
// valid.
func FuzzParseRecipe(f *testing.F) {
	f.Add([]byte(validRecipe))
	f.Add([]byte("name = \"x\"\n[inputs.a]\nfile = \"../a\"\n"))
	f.Add([]byte("[[shape]]\nvcpus = -1\n[[initrd.file]]\nmode = \"9\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		r, err := ParseRecipe(b)
		if err != nil {
			if !errors.Is(err, ErrRecipe) {
				t.Fatalf("error %v does not wrap ErrRecipe", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted recipe fails validation: %v", err)
		}
	})
}
