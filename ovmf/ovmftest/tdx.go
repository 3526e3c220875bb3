package ovmftest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mkcvm/mkcvm/ovmf"
)

// TDXOptions describes a synthetic TDX flash image: VarsSize bytes of
// variable store (the CFV) followed by CodeSize bytes of code (the BFV),
// mapped so the image ends at 4 GiB like OVMF, plus the extra sections.
type TDXOptions struct {
	VarsSize, CodeSize int                       // multiples of 4 KiB; VarsSize may be 0 (no CFV)
	Seed               byte                      // selects the filler bytes
	Extra              []ovmf.TDXMetadataSection // appended after BFV and CFV (TD_HOB, TempMem, ...)
	// MetadataOffset is where the TDX metadata GUID goes, counted back
	// from the end of the image (default 0x1000).
	MetadataOffset int
}

// TDXFirmware builds a synthetic combined VARS+CODE image carrying TDX
// metadata and an OVMF footer table, with deterministic filler bytes. It
// returns the image and the metadata it encoded.
func TDXFirmware(o TDXOptions) ([]byte, *ovmf.TDXMetadata, error) {
	n := o.VarsSize + o.CodeSize
	img := filler(n, o.Seed)
	base := uint64(1<<32) - uint64(n)
	m := &ovmf.TDXMetadata{Version: ovmf.TDXMetadataVersion, Sections: []ovmf.TDXMetadataSection{{
		DataOffset: uint32(o.VarsSize), RawDataSize: uint32(o.CodeSize),
		MemoryAddress: base + uint64(o.VarsSize), MemoryDataSize: uint64(o.CodeSize),
		Type: ovmf.TDXSectionBFV, Attributes: ovmf.TDXAttrExtendMR,
	}}}
	if o.VarsSize > 0 {
		m.Sections = append(m.Sections, ovmf.TDXMetadataSection{
			DataOffset: 0, RawDataSize: uint32(o.VarsSize), MemoryAddress: base,
			MemoryDataSize: uint64(o.VarsSize), Type: ovmf.TDXSectionCFV,
		})
	}
	m.Sections = append(m.Sections, o.Extra...)
	if err := PlaceTDXMetadata(img, m, o.MetadataOffset); err != nil {
		return nil, nil, err
	}
	return img, m, nil
}

// PlaceTDXMetadata encodes m into img at fromEnd bytes before its end
// (0 means 0x1000) and writes a footer table with the TDX metadata offset
// entry.
func PlaceTDXMetadata(img []byte, m *ovmf.TDXMetadata, fromEnd int) error {
	if fromEnd == 0 {
		fromEnd = 0x1000
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	at := len(img) - fromEnd
	if at < 0 || at+len(b) > len(img)-0x100 {
		return fmt.Errorf("placing TDX metadata: 0x%x bytes at 0x%x do not fit the 0x%x-byte image", len(b), at, len(img))
	}
	copy(img[at:], b)
	e, err := ovmf.TDXMetadataOffsetEntry(len(img), int64(at))
	if err != nil {
		return err
	}
	_, err = PlaceFooterTable(img, &ovmf.FooterTable{Entries: []ovmf.FooterEntry{e}})
	return err
}

// filler returns n deterministic pseudo-random bytes (SHA-256 in counter
// mode over seed).
func filler(n int, seed byte) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var ctr [9]byte
	ctr[0] = seed
	for i := uint64(0); len(out) < n; i++ {
		binary.LittleEndian.PutUint64(ctr[1:], i)
		s := sha256.Sum256(ctr[:])
		out = append(out, s[:]...)
	}
	return out[:n]
}

// DebianOVMFVersion is the Debian bookworm ovmf package whose OVMF.fd the
// TDX known-answer tests use (combined VARS+CODE, 2 MiB, TDX metadata).
const (
	DebianOVMFVersion = "2022.11-6+deb12u2"
	DebianOVMFSHA256  = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
	debianOVMFPath    = "/usr/share/ovmf/OVMF.fd"
)

// DebianOVMF returns the bytes of OVMF.fd from ovmf DebianOVMFVersion:
// the installed /usr/share/ovmf/OVMF.fd if its sha256 matches, else the
// file extracted (dpkg-deb -x) from $MKCVM_DEBDIR/ovmf_<version>_all.deb.
// It skips the test when neither is available and MKCVM_DEBDIR is unset,
// and fails when MKCVM_DEBDIR is set (make test) but the file is missing.
func DebianOVMF(t testing.TB) []byte {
	t.Helper()
	if b, err := os.ReadFile(debianOVMFPath); err == nil && sha256Hex(b) == DebianOVMFSHA256 {
		return b
	}
	dir := os.Getenv("MKCVM_DEBDIR")
	deb := filepath.Join(dir, "ovmf_"+DebianOVMFVersion+"_all.deb")
	if _, err := os.Stat(deb); dir == "" || err != nil {
		if dir == "" {
			t.Skipf("no %s with sha256 %s and MKCVM_DEBDIR unset", debianOVMFPath, DebianOVMFSHA256)
		}
		t.Fatalf("ovmf %s: %s missing (run make debs)", DebianOVMFVersion, deb)
	}
	out := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", deb, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v: %s", deb, err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, "usr/share/ovmf/OVMF.fd"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hex(b); got != DebianOVMFSHA256 {
		t.Fatalf("OVMF.fd from %s has sha256 %s, want %s", deb, got, DebianOVMFSHA256)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TDXSynthCase is a named synthetic TDX image.
type TDXSynthCase struct {
	Name    string
	Options TDXOptions
}

// TDXSynthCases are the synthetic images whose MRTDs are pinned from an
// independent implementation (measure/testdata/tdx/gendata writes them).
func TDXSynthCases() []TDXSynthCase {
	return []TDXSynthCase{
		{Name: "synth-a", Options: TDXOptions{VarsSize: 0x4000, CodeSize: 0xc000, Seed: 1, Extra: []ovmf.TDXMetadataSection{
			{MemoryAddress: 0x800000, MemoryDataSize: 0x2000, Type: ovmf.TDXSectionTempMem},
			{MemoryAddress: 0x809000, MemoryDataSize: 0x1000, Type: ovmf.TDXSectionTDHOB},
			{MemoryAddress: 0x1000000, MemoryDataSize: 0x4000, Type: ovmf.TDXSectionPermMem, Attributes: ovmf.TDXAttrPageAug},
		}}},
		{Name: "synth-b", Options: TDXOptions{CodeSize: 0x20000, Seed: 2, MetadataOffset: 0x2000, Extra: []ovmf.TDXMetadataSection{
			{DataOffset: 0x3000, RawDataSize: 0x3000, MemoryAddress: 0x2000000, MemoryDataSize: 0x3000, Type: ovmf.TDXSectionPayload, Attributes: ovmf.TDXAttrExtendMR},
			{MemoryAddress: 0x820000, MemoryDataSize: 0x1000, Type: ovmf.TDXSectionTDHOB},
		}}},
	}
}
