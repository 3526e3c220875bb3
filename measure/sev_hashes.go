package measure

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// QEMU's SEV hash table (QEMU target/i386/sev.c, SevHashTable and
// PaddedSevHashTable, as of QEMU 8.x): a header GUID and length, then the
// command-line, initrd and kernel entries (GUID, UINT16 length, SHA-256),
// padded to 16 bytes. OVMF's BlobVerifierLibSevHashes checks each blob
// against it; SNP measures the page that holds it, SEV and SEV-ES append
// it to the launch measurement.
const (
	sizeofSEVHashEntry = ovmf.SizeofGUID + 2 + sha256.Size
	sizeofSEVHashTable = ovmf.SizeofGUID + 2 + 3*sizeofSEVHashEntry
	// SizeofPaddedSEVHashTable is the table size QEMU writes (16-aligned).
	SizeofPaddedSEVHashTable = (sizeofSEVHashTable + 15) &^ 15
)

// GUIDs of the hash table and its entries (QEMU target/i386/sev.c).
var (
	sevHashTableHeaderGUID = ovmf.MustParseGUID("9438d606-4f22-4cc9-b479-a793d411fd21")
	sevKernelEntryGUID     = ovmf.MustParseGUID("4de79437-abd2-427f-b835-d5b172d2045b")
	sevInitrdEntryGUID     = ovmf.MustParseGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
	sevCmdlineEntryGUID    = ovmf.MustParseGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
)

// SEVHashes are the SHA-256 digests QEMU puts in the SEV hash table for a
// measured direct boot.
type SEVHashes struct {
	Kernel  [sha256.Size]byte
	Initrd  [sha256.Size]byte // of the initrd bytes; no initrd hashes as empty
	Cmdline [sha256.Size]byte // of the command line plus a NUL; none hashes as "\x00"
}

// NewSEVHashes hashes the kernel, initrd and command line the way QEMU
// does: a missing initrd (nil) hashes like an empty one, and the command
// line is hashed with its terminating NUL (a missing one is just "\x00").
func NewSEVHashes(kernel, initrd []byte, cmdline string) SEVHashes {
	var h SEVHashes
	// Kernel and initrd hash concurrently: one pass over each, in parallel.
	done := make(chan struct{})
	go func() {
		h.Initrd = sha256.Sum256(initrd)
		close(done)
	}()
	h.Kernel = sha256.Sum256(kernel)
	<-done
	c := sha256.New()
	c.Write([]byte(cmdline))
	c.Write([]byte{0})
	c.Sum(h.Cmdline[:0])
	return h
}

// Table encodes the padded SEV hash table.
func (h *SEVHashes) Table() []byte {
	b := make([]byte, 0, SizeofPaddedSEVHashTable)
	b = append(b, sevHashTableHeaderGUID[:]...)
	b = binary.LittleEndian.AppendUint16(b, sizeofSEVHashTable)
	for _, e := range []struct {
		g ovmf.GUID
		d *[sha256.Size]byte
	}{{sevCmdlineEntryGUID, &h.Cmdline}, {sevInitrdEntryGUID, &h.Initrd}, {sevKernelEntryGUID, &h.Kernel}} {
		b = append(b, e.g[:]...)
		b = binary.LittleEndian.AppendUint16(b, sizeofSEVHashEntry)
		b = append(b, e.d[:]...)
	}
	return append(b, make([]byte, SizeofPaddedSEVHashTable-sizeofSEVHashTable)...)
}

// Page returns the 4 KiB page that holds the table at byte offset off.
func (h *SEVHashes) Page(off int) ([]byte, error) {
	if off < 0 || off+SizeofPaddedSEVHashTable > pageSize {
		return nil, fmt.Errorf("SEV hash table at page offset 0x%x does not fit in a page", off)
	}
	p := make([]byte, pageSize)
	copy(p[off:], h.Table())
	return p, nil
}
