package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/ulikunitz/xz"
)

// snpKATDir holds the known answers of sev-snp-measure 0.0.13 (see
// testdata/provenance/snp.md) and their small inputs.
const snpKATDir = "../../measure/testdata/snp"

// snpDebInputs are the known-answer inputs that come from Debian packages
// in $MKCVM_DEBDIR.
var snpDebInputs = map[string][2]string{
	"debian-OVMF.fd":         {"ovmf_2022.11-6+deb12u2_all.deb", "./usr/share/ovmf/OVMF.fd"},
	"debian-OVMF_CODE.fd":    {"ovmf_2022.11-6+deb12u2_all.deb", "./usr/share/OVMF/OVMF_CODE.fd"},
	"debian-OVMF_CODE_4M.fd": {"ovmf_2022.11-6+deb12u2_all.deb", "./usr/share/OVMF/OVMF_CODE_4M.fd"},
	"vmlinuz-6.1.0-50-amd64": {"linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb", "./boot/vmlinuz-6.1.0-50-amd64"},
}

// snpStage copies the known-answer inputs into a temporary directory and
// changes into it. It reports whether the Debian inputs are there.
func snpStage(t *testing.T) bool {
	dir := t.TempDir()
	for _, n := range []string{"ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin", "initrd.cpio.gz"} {
		b, err := os.ReadFile(filepath.Join(snpKATDir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"svsm.bin", "svsm_ovmf.fd"} {
		gz, err := os.Open(filepath.Join(snpKATDir, n+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(gz)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		gz.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	debdir := os.Getenv("MKCVM_DEBDIR")
	if debdir != "" {
		for n, src := range snpDebInputs {
			b, err := snpFromDeb(filepath.Join(debdir, src[0]), src[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Chdir(dir)
	return debdir != ""
}

// snpFromDeb reads member from a .deb's data.tar.xz.
func snpFromDeb(deb, member string) ([]byte, error) {
	raw, err := os.ReadFile(deb)
	if err != nil {
		return nil, err
	}
	for off := 8; off+60 <= len(raw); {
		var size int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(raw[off+48:off+58])), "%d", &size); err != nil || off+60+size > len(raw) {
			return nil, fmt.Errorf("%s: bad ar header at 0x%x", deb, off)
		}
		if strings.TrimRight(strings.TrimSpace(string(raw[off:off+16])), "/") == "data.tar.xz" {
			zr, err := xz.NewReader(bytes.NewReader(raw[off+60 : off+60+size]))
			if err != nil {
				return nil, err
			}
			tr := tar.NewReader(zr)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%s: no %s", deb, member)
				}
				if err != nil {
					return nil, err
				}
				if h.Name == member {
					return io.ReadAll(tr)
				}
			}
		}
		off += 60 + size + size%2
	}
	return nil, fmt.Errorf("%s: no data.tar.xz", deb)
}

func runMkcvm(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

// TestMeasureSNPKnownAnswers runs every sev-snp-measure 0.0.13 command line
// of kat.tsv through `mkcvm measure snp` and compares stdout byte for byte.
func TestMeasureSNPKnownAnswers(t *testing.T) {
	f, err := os.Open(filepath.Join(snpKATDir, "kat.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	haveDebs := snpStage(t)
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		fields := strings.Split(sc.Text(), "\t")
		want, args := fields[0]+"\n", fields[1:]
		needsDeb := false
		for _, a := range args {
			if _, ok := snpDebInputs[a]; ok {
				needsDeb = true
			}
		}
		if needsDeb && !haveDebs {
			continue
		}
		n++
		got, stderr, err := runMkcvm(append([]string{"measure", "snp"}, args...)...)
		if err != nil || got != want {
			t.Errorf("line %d: mkcvm measure snp %s\n got %q (err %v, stderr %q)\nwant %q", line, strings.Join(args, " "), got, err, stderr, want)
		}
	}
	if !haveDebs {
		t.Logf("MKCVM_DEBDIR unset: ran only the %d known answers without Debian inputs", n)
	} else if n < 200 {
		t.Errorf("ran only %d known answers", n)
	}
}

func TestMeasureSNPErrors(t *testing.T) {
	haveDebs := snpStage(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
		deb  bool
	}{
		{"no vcpus", []string{"--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin"}, 2, "missing --vcpus N in guest mode 'snp'", false},
		{"no vcpu type", []string{"--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--vcpus", "1"}, 2, "missing --vcpu-type or --vcpu-sig or --vcpu-family", false},
		{"svsm without vars", []string{"--mode", "snp:svsm", "--ovmf", "svsm_ovmf.fd", "--svsm", "svsm.bin", "--vcpus", "1", "--vcpu-type", "EPYC"}, 2, "snp:svsm mode requires --vars-size or --vars-file", false},
		{"svsm on gce", []string{"--mode", "snp:svsm", "--ovmf", "svsm_ovmf.fd", "--svsm", "svsm.bin", "--vars-size", "4096", "--vcpus", "1", "--vmm-type", "gce"}, 1, "SVSM mode is only implemented for QEMU", false},
		{"svsm image without SVSM info", []string{"--mode", "snp:svsm", "--ovmf", "svsm_ovmf.fd", "--svsm", "ovmf_OvmfX64_suffix.bin", "--vars-size", "4096", "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, "ovmf_OvmfX64_suffix.bin: offset 0x1000: footer table: no SVSM info entry", false},
		{"range without matrix", []string{"--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--vcpus", "1-4", "--vcpu-type", "EPYC"}, 2, `argument --vcpus: invalid int value: "1-4"`, false},
		{"bad mode", []string{"--mode", "tdx", "--ovmf", "ovmf_AmdSev_suffix.bin"}, 2, "invalid choice", false},
		{"bad vmm", []string{"--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--vcpus", "1", "--vmm-type", "xen"}, 2, "unknown VMM type 'xen'", false},
		{"initrd without kernel", []string{"--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--initrd", "initrd.cpio.gz"}, 2, "--kernel required when using --initrd", false},
		{"kernel on firmware without kernel hashes", []string{"--mode", "snp", "--ovmf", "ovmf_OvmfX64_suffix.bin", "--kernel", "initrd.cpio.gz", "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, "has no SNP_KERNEL_HASHES section in its SEV metadata, so the launch digest cannot cover the kernel", false},
		{"no SEV metadata", []string{"--mode", "snp", "--ovmf", "debian-OVMF_CODE_4M.fd", "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, "debian-OVMF_CODE_4M.fd has no SEV metadata: it was not built for SEV-SNP", true},
		{"kernel on Debian OVMF.fd", []string{"--mode", "snp", "--ovmf", "debian-OVMF.fd", "--kernel", "vmlinuz-6.1.0-50-amd64", "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, "cannot measure the kernel", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.deb && !haveDebs {
				t.Skip("MKCVM_DEBDIR unset")
			}
			out, _, err := runMkcvm(append([]string{"measure", "snp"}, tc.args...)...)
			if err == nil {
				t.Fatalf("no error; stdout %q", out)
			}
			if out != "" {
				t.Errorf("stdout %q on error", out)
			}
			if c := exitCode(err); c != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("exit %d, error %q; want exit %d and %q", c, err, tc.code, tc.want)
			}
		})
	}
}

func TestMeasureSNPFirmwareOnlyJSONMatrix(t *testing.T) {
	snpStage(t)
	base := []string{"measure", "snp", "--mode", "snp", "--ovmf", "ovmf_OvmfX64_suffix.bin"}
	// --firmware-only measures the firmware and says so.
	fwOnly, _, err := runMkcvm(append(base, "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--kernel", "initrd.cpio.gz", "--firmware-only", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := runMkcvm(append(base, "--vcpus", "2", "--vcpu-type", "EPYC-Milan")...)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Digest string
		Inputs struct {
			OVMF         struct{ SHA256 string }
			Kernel       *struct{ Path string }
			FirmwareOnly bool `json:"firmware_only"`
		}
		Results []struct{ Shape struct{ VCPUs int } }
		Notes   []string
	}
	if err := json.Unmarshal([]byte(fwOnly), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Digest+"\n" != plain || !rec.Inputs.FirmwareOnly || rec.Inputs.Kernel == nil || len(rec.Notes) != 1 || rec.Inputs.OVMF.SHA256 == "" {
		t.Errorf("firmware-only JSON %s, plain digest %q", fwOnly, plain)
	}
	// --matrix gives the single-shape digests, one line per shape.
	m, _, err := runMkcvm(append(base, "--matrix", "--vcpus", "1-3,8", "--vcpu-type", "EPYC-Milan,EPYC-Genoa", "--vmm-type", "QEMU,gce", "--guest-features", "0x1,0x21")...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(m), "\n")
	if len(lines) != 4*2*2*2 {
		t.Fatalf("%d matrix lines", len(lines))
	}
	for _, l := range lines[len(lines)-3:] {
		var vcpus int
		var typ, sig, vmm, gf, digest string
		if _, err := fmt.Sscanf(strings.NewReplacer("=", " ").Replace(l), "%s vcpus %d vcpu-type %s vcpu-sig %s vmm-type %s guest-features %s", &digest, &vcpus, &typ, &sig, &vmm, &gf); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		one, _, err := runMkcvm(append(base, "--vcpus", fmt.Sprint(vcpus), "--vcpu-type", typ, "--vmm-type", vmm, "--guest-features", gf)...)
		if err != nil || one != digest+"\n" {
			t.Errorf("matrix %q, single %q (%v)", l, one, err)
		}
	}
}

// TestMeasureSNPDumpVMSA checks --dump-vmsa writes one page per vCPU and
// that the pages hash to the digest's VMSA updates (SEV-ES: the digest is
// SHA-256 over firmware then the pages).
func TestMeasureSNPDumpVMSA(t *testing.T) {
	snpStage(t)
	out, _, err := runMkcvm("measure", "snp", "--mode", "seves", "--ovmf", "ovmf_OvmfX64_suffix.bin", "--vcpus", "3", "--vcpu-type", "EPYC-Milan", "--dump-vmsa")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fw, _ := os.ReadFile("ovmf_OvmfX64_suffix.bin")
	h.Write(fw)
	for i := range 3 {
		p, err := os.ReadFile(fmt.Sprintf("vmsa%d.bin", i))
		if err != nil || len(p) != 4096 {
			t.Fatalf("vmsa%d.bin: %d bytes, %v", i, len(p), err)
		}
		h.Write(p)
	}
	if got := fmt.Sprintf("%x\n", h.Sum(nil)); got != out {
		t.Errorf("SHA-256 over firmware and dumped VMSAs %q, digest %q", got, out)
	}
	if _, err := os.Stat("vmsa3.bin"); err == nil {
		t.Error("vmsa3.bin written for 3 vCPUs")
	}
}

// TestMeasureSNPIDBlock compares `mkcvm measure snp-id-block` with the
// output of sev-snp-measure 0.0.13's snp-create-id-block.py for the same
// keys and digest: equal ID block and key digests, and an ID auth whose
// signatures verify (they are randomized, so not byte-equal).
func TestMeasureSNPIDBlock(t *testing.T) {
	ref, err := os.ReadFile(filepath.Join(snpKATDir, "idblock.out"))
	if err != nil {
		t.Fatal(err)
	}
	ld := "6cEKuY+Ahr9KSZPc3B92ixEovLAjAdF5Hx0ydDKeeQ2y0SowHWbZmkYqE7XYfihA" // base64 of the digest in idblock.out
	out, _, err := runMkcvm("measure", "snp-id-block", "--measurement", ld,
		"--idkey", filepath.Join(snpKATDir, "id-key.pem"), "--authorkey", filepath.Join(snpKATDir, "author-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	got, want := strings.Split(out, "\n"), strings.Split(strings.TrimSpace(string(ref))+"\n", "\n")
	if len(got) != 4 || got[3] != "" {
		t.Fatalf("output %q", out)
	}
	gotBlock, gotAuth, _ := strings.Cut(got[0], ",id-auth=")
	wantBlock, _, _ := strings.Cut(want[0], ",id-auth=")
	if gotBlock != wantBlock || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("got\n%s\nwant (sev-snp-measure)\n%s", out, ref)
	}
	blk, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(gotBlock, "id-block="))
	auth, _ := base64.StdEncoding.DecodeString(gotAuth)
	b, err := measure.ParseIDBlock(blk)
	if err != nil {
		t.Fatal(err)
	}
	a, err := measure.ParseIDAuth(auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := measure.VerifyIDAuth(b, a); err != nil {
		t.Error(err)
	}
}
