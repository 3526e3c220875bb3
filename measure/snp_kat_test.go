package measure_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
)

// snpKATRow is one line of testdata/snp/kat.tsv: the stdout of sev-snp-measure
// 0.0.13 and the arguments that produced it (see
// testdata/provenance/snp.md).
type snpKATRow struct {
	line   int
	stdout string
	args   []string
	flags  map[string]string
}

func readSNPKAT(t testing.TB) []snpKATRow {
	t.Helper()
	f, err := os.Open("testdata/snp/kat.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []snpKATRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		fs := strings.Split(sc.Text(), "\t")
		r := snpKATRow{line: n, stdout: fs[0], args: fs[1:], flags: map[string]string{}}
		for i := 0; i < len(r.args); i++ {
			a := r.args[i]
			if a == "-v" {
				r.flags[a] = ""
				continue
			}
			r.flags[a] = r.args[i+1]
			i++
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// snpKATInput returns the bytes of a known-answer input by name.
func snpKATInput(t testing.TB, name string) []byte {
	t.Helper()
	if _, ok := snpDebFiles[name]; ok {
		return snpDebFile(t, name)
	}
	if name == "svsm.bin" || name == "svsm_ovmf.fd" {
		return snpGunzip(t, filepath.Join("testdata/snp", name+".gz"))
	}
	b, err := os.ReadFile(filepath.Join("testdata/snp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func snpGunzip(t testing.TB, path string) []byte {
	t.Helper()
	if b, ok := snpDebCache.Load(path); ok {
		return b.([]byte)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	snpDebCache.Store(path, b)
	return b
}

// digest extracts the digest bytes from a sev-snp-measure stdout line.
func (r snpKATRow) digest(t *testing.T) []byte {
	s := r.stdout
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	var b []byte
	var err error
	if r.flags["--output-format"] == "base64" {
		b, err = base64.StdEncoding.DecodeString(s)
	} else {
		b, err = hex.DecodeString(s)
	}
	if err != nil {
		t.Fatalf("line %d: %v", r.line, err)
	}
	return b
}

func (r snpKATRow) int(t *testing.T, flag string, def int) int {
	v, ok := r.flags[flag]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		t.Fatalf("line %d: %s %q: %v", r.line, flag, v, err)
	}
	return int(n)
}

func (r snpKATRow) sig(t *testing.T) uint32 {
	if _, ok := r.flags["--vcpu-family"]; ok {
		return measure.VCPUSig(r.int(t, "--vcpu-family", 0), r.int(t, "--vcpu-model", 0), r.int(t, "--vcpu-stepping", 0))
	}
	if _, ok := r.flags["--vcpu-sig"]; ok {
		return uint32(r.int(t, "--vcpu-sig", 0))
	}
	if name, ok := r.flags["--vcpu-type"]; ok {
		vt, ok := measure.LookupVCPUType(name)
		if !ok {
			t.Fatalf("line %d: unknown vCPU type %q", r.line, name)
		}
		return vt.Sig()
	}
	return 0
}

func (r snpKATRow) hashes(t *testing.T) *measure.SEVHashes {
	k, ok := r.flags["--kernel"]
	if !ok {
		return nil
	}
	var initrd []byte
	if n, ok := r.flags["--initrd"]; ok {
		initrd = snpKATInput(t, n)
	}
	h := measure.NewSEVHashes(snpKATInput(t, k), initrd, r.flags["--append"])
	return &h
}

// compute runs our implementation for one row.
func (r snpKATRow) compute(t *testing.T) []byte {
	fwName := r.flags["--ovmf"]
	fw := snpKATInput(t, fwName)
	vmm := measure.VMMQEMU
	if v, ok := r.flags["--vmm-type"]; ok {
		var err error
		if vmm, err = measure.ParseVMMType(v); err != nil {
			t.Fatal(err)
		}
	}
	switch r.flags["--mode"] {
	case "snp:ovmf-hash":
		d, err := measure.SNPOVMFHash(fw)
		if err != nil {
			t.Fatal(err)
		}
		return d[:]
	case "snp":
		var pre *measure.SNPDigest
		if s, ok := r.flags["--snp-ovmf-hash"]; ok {
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			pre = (*measure.SNPDigest)(b)
		}
		f, err := measure.NewSNPFirmware(fwName, fw, pre)
		if err != nil {
			t.Fatal(err)
		}
		l, err := measure.NewSNPLaunch(f, r.hashes(t))
		if err != nil {
			t.Fatal(err)
		}
		d, err := l.Digest(measure.SNPShape{VCPUs: r.int(t, "--vcpus", 0), VCPUSig: r.sig(t), VMM: vmm,
			GuestFeatures: uint64(r.int(t, "--guest-features", 1))})
		if err != nil {
			t.Fatal(err)
		}
		return d[:]
	case "snp:svsm":
		d, err := measure.SNPSVSMLaunchDigest(measure.SVSMInputs{OVMFName: fwName, OVMF: fw, SVSMName: r.flags["--svsm"],
			SVSM: snpKATInput(t, r.flags["--svsm"]), VarsSize: r.int(t, "--vars-size", 0), VCPUs: r.int(t, "--vcpus", 0), VCPUSig: r.sig(t)})
		if err != nil {
			t.Fatal(err)
		}
		return d[:]
	case "seves", "sev":
		l, err := measure.NewSEVLaunch(fwName, fw, r.hashes(t))
		if err != nil {
			t.Fatal(err)
		}
		if r.flags["--mode"] == "sev" {
			d := l.SEVDigest()
			return d[:]
		}
		d, err := l.SEVESDigest(r.int(t, "--vcpus", 0), r.sig(t), vmm)
		if err != nil {
			t.Fatal(err)
		}
		return d[:]
	}
	t.Fatalf("line %d: unknown mode %q", r.line, r.flags["--mode"])
	return nil
}

// TestSNPKnownAnswers checks every value sev-snp-measure 0.0.13 computed.
func TestSNPKnownAnswers(t *testing.T) {
	rows := readSNPKAT(t)
	if len(rows) < 200 {
		t.Fatalf("only %d known answers", len(rows))
	}
	for _, r := range rows {
		t.Run(strconv.Itoa(r.line)+":"+strings.Join(r.args, " "), func(t *testing.T) {
			want := r.digest(t)
			if got := r.compute(t); !bytes.Equal(got, want) {
				t.Errorf("digest %x, sev-snp-measure says %x", got, want)
			}
		})
	}
}
