package manifest_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestEncodeGolden(t *testing.T) {
	got, err := manifest.Encode(manifesttest.Sample())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "sample.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("canonical encoding differs from %s (-want +got):\n%s", golden, d)
	}
	if !bytes.HasSuffix(got, []byte("}\n")) || bytes.Contains(got, []byte("\r")) || bytes.Contains(got, []byte(`\u003c`)) {
		t.Errorf("canonical bytes must end in one LF, have no CR and no HTML escapes")
	}
	again, err := manifest.Encode(manifesttest.Sample())
	if err != nil || !bytes.Equal(got, again) {
		t.Errorf("Encode is not deterministic (err %v)", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	canon, err := manifest.Encode(manifesttest.Sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{canon, manifest.Compact(canon)} {
		m, err := manifest.Decode(in)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if d := cmp.Diff(manifesttest.Sample(), m); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
}

// TestSchemaIndependent validates our output with Python's jsonschema
// package, an implementation independent of the Go validator the decoder
// uses, and checks that it rejects what the decoder rejects.
func TestSchemaIndependent(t *testing.T) {
	py := ""
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(c); err == nil && exec.Command(p, "-c", "import jsonschema").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("python3 with jsonschema not installed (Debian: python3-jsonschema)")
	}
	canon, err := manifest.Encode(manifesttest.Sample())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, canon, 0o644)
	os.WriteFile(bad, bytes.Replace(canon, []byte(`"mrtd"`), []byte(`"extra": 1, "mrtd"`), 1), 0o644)
	script := `import json, sys, jsonschema
s = json.load(open(sys.argv[1])); jsonschema.Draft202012Validator.check_schema(s)
v = jsonschema.Draft202012Validator(s)
ok = not list(v.iter_errors(json.load(open(sys.argv[2]))))
bad = list(v.iter_errors(json.load(open(sys.argv[3]))))
print("good-ok" if ok else "good-FAIL", "bad-rejected" if bad else "bad-ACCEPTED")`
	out, err := exec.Command(py, "-c", script, filepath.Join("schema", "manifest-v1.json"), good, bad).CombinedOutput()
	if err != nil {
		t.Fatalf("python jsonschema: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "good-ok bad-rejected" {
		t.Errorf("python jsonschema: %s", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	canon, err := manifest.Encode(manifesttest.Sample())
	if err != nil {
		t.Fatal(err)
	}
	repl := func(old, new string) []byte {
		if !bytes.Contains(canon, []byte(old)) {
			t.Fatalf("sample has no %q", old)
		}
		return bytes.Replace(canon, []byte(old), []byte(new), 1)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"unknown top-level field", repl(`"epoch"`, `"signed_by": "x",`+"\n  "+`"epoch"`), manifest.ErrSchema, "signed_by"},
		{"unknown field in tdx values", repl(`"mrtd"`, `"mrconfigid": "00",`+"\n          "+`"mrtd"`), manifest.ErrSchema, "mrconfigid"},
		{"unknown field in event", repl(`"description": "kernel"`, `"description": "kernel", "x": 1`), manifest.ErrSchema, "/shapes/2/tpm/event_log/0"},
		{"unknown field in artifact", repl(`"role": "kernel"`, `"role": "kernel", "url": "x"`), manifest.ErrSchema, "/artifacts/1"},
		{"future schema", repl(`mkcvm.dev/manifest/v1`, `mkcvm.dev/manifest/v2`), manifest.ErrSchema, "v2"},
		{"uppercase digest", bytes.Replace(canon, []byte(manifesttest.Sample().Artifacts[0].SHA256), []byte(strings.ToUpper(manifesttest.Sample().Artifacts[0].SHA256)), 1), manifest.ErrSchema, "/inputs/0/sha256"},
		{"bad role", repl(`"role": "kernel"`, `"role": "Kernel Image"`), manifest.ErrSchema, "/artifacts/1/role"},
		{"short launch digest", repl(`"launch_digest": "`, `"launch_digest": "00`), manifest.ErrSchema, "launch_digest"},
		{"pcr index out of range", repl(`"9": "`, `"24": "`), manifest.ErrSchema, "object key: '24'"},
		{"issued_at not from epoch", repl(`"issued_at": "2026-01-01T00:00:00Z"`, `"issued_at": "2026-01-02T00:00:00Z"`), manifest.ErrInvalid, "build epoch"},
		{"duplicate key", repl(`"cmdline": "console=ttyS0 quiet",`, `"cmdline": "console=ttyS0 quiet",`+"\n  "+`"cmdline": "console=ttyS0 quiet",`), manifest.ErrSchema, "canonical"},
		{"reordered keys", repl(`"name": "sample",`+"\n    "+`"sha256"`, `"sha256"`), manifest.ErrSchema, ""},
		{"extra whitespace", repl(`"epoch": `, `"epoch":  `), manifest.ErrSchema, "canonical"},
		{"trailing data", append(bytes.Clone(canon), []byte("{}")...), manifest.ErrSchema, ""},
		{"not json", []byte("schema: v1"), manifest.ErrSchema, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := manifest.Decode(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *manifest.Manifest)
		msg    string
	}{
		{"duplicate artifact", func(m *manifest.Manifest) { m.Artifacts = append(m.Artifacts, m.Artifacts[0]) }, `artifacts[3]: duplicate "OVMF.fd"`},
		{"duplicate shape", func(m *manifest.Manifest) { m.Shapes = append(m.Shapes, m.Shapes[0]) }, `shapes[3]: duplicate "snp-4"`},
		{"expiry before issue", func(m *manifest.Manifest) { m.Validity.ExpiresAt = "2025-01-01T00:00:00Z" }, "not after issued_at"},
		{"pcr without basis", func(m *manifest.Manifest) { delete(m.Shapes[2].TPM.Basis, "9") }, "tpm.pcrs.sha256.9: has no basis"},
		{"pinned rtmr empty", func(m *manifest.Manifest) { m.Shapes[1].TDX.RTMR[0] = "" }, "tdx.rtmr[0]: empty"},
		{"bad supersedes", func(m *manifest.Manifest) { m.Supersedes = []string{"sha256:XYZ"} }, "/supersedes/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := manifesttest.Sample()
			tc.mutate(m)
			err := manifest.Validate(m)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Validate error %v, want mention of %q", err, tc.msg)
			}
			if _, err := manifest.Encode(m); err == nil {
				t.Errorf("Encode accepted an invalid manifest")
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	canon, err := manifest.Encode(manifesttest.Sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(canon)
	f.Add(manifest.Compact(canon))
	f.Add([]byte(`{"schema":"mkcvm.dev/manifest/v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		m, err := manifest.Decode(b)
		if err != nil {
			return
		}
		out, err := manifest.Encode(m)
		if err != nil {
			t.Fatalf("decoded manifest does not re-encode: %v", err)
		}
		if !bytes.Equal(out, b) && !bytes.Equal(manifest.Compact(out), b) {
			t.Fatalf("decode/encode not stable")
		}
	})
}
