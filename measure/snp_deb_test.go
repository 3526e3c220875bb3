package measure_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ulikunitz/xz"
)

// Debian packages the known-answer tests read (make test downloads them to
// $MKCVM_DEBDIR via RECIPE_DEBS in mk/snp.mk).
const (
	snpOVMFDeb   = "ovmf_2022.11-6+deb12u2_all.deb"
	snpKernelDeb = "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"
)

// snpDebFiles maps a known-answer input name to the .deb and member holding it.
var snpDebFiles = map[string][2]string{
	"debian-OVMF.fd":         {snpOVMFDeb, "./usr/share/ovmf/OVMF.fd"},
	"debian-OVMF_CODE.fd":    {snpOVMFDeb, "./usr/share/OVMF/OVMF_CODE.fd"},
	"debian-OVMF_CODE_4M.fd": {snpOVMFDeb, "./usr/share/OVMF/OVMF_CODE_4M.fd"},
	"vmlinuz-6.1.0-50-amd64": {snpKernelDeb, "./boot/vmlinuz-6.1.0-50-amd64"},
}

var snpDebCache sync.Map // name -> []byte

// snpDebFile returns a known-answer input extracted from its .deb, skipping
// the test when MKCVM_DEBDIR is unset.
func snpDebFile(t testing.TB, name string) []byte {
	t.Helper()
	if b, ok := snpDebCache.Load(name); ok {
		return b.([]byte)
	}
	src, ok := snpDebFiles[name]
	if !ok {
		t.Fatalf("no .deb source for %q", name)
	}
	dir := os.Getenv("MKCVM_DEBDIR")
	if dir == "" {
		t.Skipf("MKCVM_DEBDIR unset: %s comes from %s (make test sets it)", name, src[0])
	}
	b, err := snpExtractDeb(filepath.Join(dir, src[0]), src[1])
	if err != nil {
		t.Fatal(err)
	}
	snpDebCache.Store(name, b)
	return b
}

// snpExtractDeb reads member from the data.tar.xz of a .deb (an ar archive).
func snpExtractDeb(deb, member string) ([]byte, error) {
	raw, err := os.ReadFile(deb)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(raw, []byte("!<arch>\n")) {
		return nil, fmt.Errorf("%s: not an ar archive", deb)
	}
	for off := 8; off+60 <= len(raw); {
		hdr := raw[off : off+60]
		var size int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(hdr[48:58])), "%d", &size); err != nil || off+60+size > len(raw) {
			return nil, fmt.Errorf("%s: bad ar member size at 0x%x", deb, off)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		body := raw[off+60 : off+60+size]
		if name == "data.tar.xz" {
			return snpFromTarXZ(body, member)
		}
		off += 60 + size + size%2
	}
	return nil, fmt.Errorf("%s: no data.tar.xz", deb)
}

func snpFromTarXZ(b []byte, member string) ([]byte, error) {
	zr, err := xz.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s not in data.tar.xz", member)
		}
		if err != nil {
			return nil, err
		}
		if h.Name == member {
			return io.ReadAll(tr)
		}
	}
}
