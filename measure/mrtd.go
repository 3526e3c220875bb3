package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/mkcvm/mkcvm/ovmf"
)

// MRTD accumulation as the TDX module performs it while the VMM builds the
// TD (Intel TDX Module Base Architecture Specification, 348549, "TD
// Build-Time Measurement": TDH.MEM.PAGE.ADD and TDH.MR.EXTEND each update
// the TD's SHA-384 context; TDH.MR.FINALIZE finalizes it). The buffer
// layout matches td-shim's td_shim_tee_info_hash.py.
const (
	// SizeofMRTDExtensionBuffer is the 128-byte buffer each operation hashes:
	// an ASCII operation name padded with zeros to 16 bytes, the 8-byte
	// little-endian GPA at offset 16, zeros to 128 bytes.
	SizeofMRTDExtensionBuffer = 128
	mrtdGPAOffset             = 16
	// MRExtendChunk is the TDH.MR.EXTEND granularity: 256 bytes of page
	// contents follow each MR.EXTEND buffer.
	MRExtendChunk = 256
)

// TDXPageOrder is the order in which a VMM adds and measures the pages of a
// metadata section. It changes MRTD, so a TDX shape records it.
type TDXPageOrder string

const (
	// PageOrderSingle adds each page and extends it before the next page
	// (QEMU >= 9 with upstream KVM: KVM_TDX_INIT_MEM_REGION with
	// KVM_TDX_MEASURE_MEMORY_REGION does TDH.MEM.PAGE.ADD then the
	// TDH.MR.EXTENDs of that page).
	PageOrderSingle TDXPageOrder = "single"
	// PageOrderTwoPass adds all pages of a section first and then extends
	// them (QEMU 8.x with the pre-upstream TDX KVM patches, the default
	// dstack-mr picks for those versions).
	PageOrderTwoPass TDXPageOrder = "two-pass"
)

// DefaultTDXPageOrder is used when a shape does not name a page order.
const DefaultTDXPageOrder = PageOrderSingle

// ParseTDXPageOrder parses a shape's page_order; "" selects
// DefaultTDXPageOrder.
func ParseTDXPageOrder(s string) (TDXPageOrder, error) {
	switch TDXPageOrder(s) {
	case "":
		return DefaultTDXPageOrder, nil
	case PageOrderSingle, PageOrderTwoPass:
		return TDXPageOrder(s), nil
	}
	return "", fmt.Errorf("TDX page order %q: want %q or %q", s, PageOrderSingle, PageOrderTwoPass)
}

// MRTD computes the TDX build-time measurement of firmware fw (the whole
// VARS+CODE flash image) laid out by md, with pages added in the given
// order. Sections with PAGE.AUG are not added; sections with MR.EXTEND are
// extended with their bytes from fw.
func MRTD(fw []byte, md *ovmf.TDXMetadata, order TDXPageOrder) ([48]byte, error) {
	var out [48]byte
	if order != PageOrderSingle && order != PageOrderTwoPass {
		return out, fmt.Errorf("computing MRTD: unknown page order %q", order)
	}
	for i, s := range md.Sections {
		if s.Attributes&ovmf.TDXAttrExtendMR == 0 {
			continue
		}
		if end := uint64(s.DataOffset) + s.MemoryDataSize; end > uint64(len(fw)) {
			return out, fmt.Errorf("computing MRTD: TDX metadata section[%d] (%s): MR.EXTEND range 0x%x..0x%x past the end of the 0x%x-byte image (section offsets refer to the whole VARS+CODE flash image)",
				i, s.Type, s.DataOffset, end, len(fw))
		}
	}
	m := newMRTDHash()
	for _, s := range md.Sections {
		m.section(fw, s, order)
	}
	m.h.Sum(out[:0])
	return out, nil
}

// TDXFirmwareMRTD parses the TDX metadata of fw (named input in errors) and
// computes its MRTD.
func TDXFirmwareMRTD(input string, fw []byte, order TDXPageOrder) ([48]byte, *ovmf.TDXMetadata, error) {
	md, err := ovmf.ParseTDXMetadata(input, fw)
	if err != nil {
		return [48]byte{}, nil, err
	}
	d, err := MRTD(fw, md, order)
	return d, md, err
}

// mrtdHash is the TD's SHA-384 measurement context plus a reusable buffer.
type mrtdHash struct {
	h   hash.Hash
	buf [SizeofMRTDExtensionBuffer]byte
}

func newMRTDHash() *mrtdHash { return &mrtdHash{h: sha512.New384()} }

// section adds and extends the pages of one metadata section.
func (m *mrtdHash) section(fw []byte, s ovmf.TDXMetadataSection, order TDXPageOrder) {
	add := s.Attributes&ovmf.TDXAttrPageAug == 0
	extend := s.Attributes&ovmf.TDXAttrExtendMR != 0
	n := s.Pages()
	if order == PageOrderTwoPass {
		for p := range n {
			if add {
				m.pageAdd(s.MemoryAddress + p*ovmf.TDXPageSize)
			}
		}
		for p := range n {
			if extend {
				m.extendPage(fw, s, p)
			}
		}
		return
	}
	for p := range n {
		if add {
			m.pageAdd(s.MemoryAddress + p*ovmf.TDXPageSize)
		}
		if extend {
			m.extendPage(fw, s, p)
		}
	}
}

// pageAdd hashes the TDH.MEM.PAGE.ADD buffer for gpa.
func (m *mrtdHash) pageAdd(gpa uint64) { m.op("MEM.PAGE.ADD", gpa) }

// extendPage hashes the 16 TDH.MR.EXTEND operations of page p of s.
func (m *mrtdHash) extendPage(fw []byte, s ovmf.TDXMetadataSection, p uint64) {
	gpa := s.MemoryAddress + p*ovmf.TDXPageSize
	off := uint64(s.DataOffset) + p*ovmf.TDXPageSize
	for c := uint64(0); c < ovmf.TDXPageSize; c += MRExtendChunk {
		m.op("MR.EXTEND", gpa+c)
		m.h.Write(fw[off+c : off+c+MRExtendChunk])
	}
}

// op hashes one 128-byte extension buffer: name, zero padding, GPA.
func (m *mrtdHash) op(name string, gpa uint64) {
	clear(m.buf[:])
	copy(m.buf[:], name)
	binary.LittleEndian.PutUint64(m.buf[mrtdGPAOffset:], gpa)
	m.h.Write(m.buf[:])
}
