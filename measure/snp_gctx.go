package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
)

// SNP guest-context launch digest, SEV Secure Nested Paging Firmware ABI
// Specification (AMD #56860) rev 1.55, section 8.17 SNP_LAUNCH_UPDATE and
// Table 67 "Layout of the PAGE_INFO Structure": each launch update hashes
// the current digest, the page contents digest and the page metadata.
const (
	// SizeofSNPDigest is the size of an SNP launch digest (SHA-384).
	SizeofSNPDigest = sha512.Size384
	sizeofPageInfo  = 0x70
	pageSize        = 0x1000

	pageTypeNormal     = 0x01
	pageTypeVMSA       = 0x02
	pageTypeZero       = 0x03
	pageTypeUnmeasured = 0x04
	pageTypeSecrets    = 0x05
	pageTypeCPUID      = 0x06

	// vmsaGPA is the GPA recorded for VMSA pages: (u64)-1 truncated to a
	// page-aligned 52-bit address.
	vmsaGPA = 0xFFFFFFFFF000
)

// SNPDigest is an SNP launch digest (the report's MEASUREMENT).
type SNPDigest [SizeofSNPDigest]byte

// gctx accumulates an SNP launch digest.
type gctx struct {
	ld   SNPDigest
	info [sizeofPageInfo]byte
}

// update extends the digest with one PAGE_INFO.
func (g *gctx) update(pageType byte, gpa uint64, contents *SNPDigest) {
	b := &g.info
	copy(b[0:48], g.ld[:])
	copy(b[48:96], contents[:])
	binary.LittleEndian.PutUint16(b[96:98], sizeofPageInfo)
	b[98] = pageType
	b[99] = 0                                   // IMI_PAGE
	b[100], b[101], b[102], b[103] = 0, 0, 0, 0 // VMPL3/2/1_PERMS, reserved
	binary.LittleEndian.PutUint64(b[104:112], gpa)
	g.ld = sha512.Sum384(b[:])
}

var zeroDigest SNPDigest

// updateZeroContent extends with n bytes of pages of a type whose contents
// are not hashed (zero, unmeasured).
func (g *gctx) updateZeroContent(pageType byte, gpa uint64, n uint64) {
	for off := uint64(0); off < n; off += pageSize {
		g.update(pageType, gpa+off, &zeroDigest)
	}
}

// pageHashes returns the SHA-384 of each 4 KiB page of data.
func pageHashes(data []byte) ([]SNPDigest, error) {
	if len(data)%pageSize != 0 {
		return nil, fmt.Errorf("size 0x%x is not a multiple of the page size", len(data))
	}
	hs := make([]SNPDigest, len(data)/pageSize)
	// Pages hash independently; split them over the CPUs. Each result goes
	// to its own index, so the order never depends on scheduling.
	workers := min(runtime.GOMAXPROCS(0), max(1, len(hs)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * len(hs) / workers; i < (w+1)*len(hs)/workers; i++ {
				hs[i] = sha512.Sum384(data[i*pageSize : (i+1)*pageSize])
			}
		})
	}
	wg.Wait()
	return hs, nil
}

// updateNormal extends with normal pages whose content hashes are hs.
func (g *gctx) updateNormal(gpa uint64, hs []SNPDigest) {
	for i := range hs {
		g.update(pageTypeNormal, gpa+uint64(i)*pageSize, &hs[i])
	}
}
