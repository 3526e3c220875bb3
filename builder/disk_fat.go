package builder

import (
	"encoding/binary"
	"fmt"
)

// FAT32 on-disk offsets (Microsoft "FAT: General Overview of On-Disk
// Format" v1.03, §3 BPB, §5 FSInfo, §6 directory entries).
const (
	bpbBytsPerSec  = 11
	bpbSecPerClus  = 13
	bpbRsvdSecCnt  = 14
	bpbNumFATs     = 16
	bpbFATSz32     = 36
	bpbRootClus    = 44
	bpbFSInfo      = 48
	fsiFreeCount   = 488
	fsiNxtFree     = 492
	fsiLeadSig     = 0x41615252 // "RRaA"
	dirEntrySize   = 32
	dirAttr        = 11
	dirFstClusHI   = 20
	dirFstClusLO   = 26
	attrLongName   = 0x0f
	attrDirectory  = 0x10
	fatEOCMin      = 0x0ffffff8
	fatClusterMask = 0x0fffffff
)

// fat32 is a view of a FAT32 volume for the two repairs below.
type fat32 struct {
	b                       []byte
	bps, spc                int
	fatOff, dataOff, nclust int
	rootClus                uint32
}

func openFAT32(b []byte) (*fat32, error) {
	if len(b) < 512 {
		return nil, fmt.Errorf("ESP: %d bytes, too small for a boot sector", len(b))
	}
	le := binary.LittleEndian
	f := &fat32{b: b, bps: int(le.Uint16(b[bpbBytsPerSec:])), spc: int(b[bpbSecPerClus])}
	if f.bps != 512 || f.spc == 0 {
		return nil, fmt.Errorf("ESP boot sector: offset 0x%x: BPB_BytsPerSec %d / BPB_SecPerClus %d unsupported", bpbBytsPerSec, f.bps, f.spc)
	}
	rsvd, nfats, fatsz := int(le.Uint16(b[bpbRsvdSecCnt:])), int(b[bpbNumFATs]), int(le.Uint32(b[bpbFATSz32:]))
	f.fatOff = rsvd * f.bps
	f.dataOff = (rsvd + nfats*fatsz) * f.bps
	f.nclust = (len(b) - f.dataOff) / (f.bps * f.spc)
	f.rootClus = le.Uint32(b[bpbRootClus:])
	if f.dataOff >= len(b) || f.nclust > fatsz*f.bps/4-2 {
		return nil, fmt.Errorf("ESP boot sector: FAT geometry (reserved %d, FATs %d x %d sectors) does not fit %d bytes", rsvd, nfats, fatsz, len(b))
	}
	return f, nil
}

func (f *fat32) next(c uint32) uint32 {
	return binary.LittleEndian.Uint32(f.b[f.fatOff+4*int(c):]) & fatClusterMask
}

// chain returns the byte ranges of the clusters of a chain starting at c.
func (f *fat32) chain(c uint32) ([][]byte, error) {
	var out [][]byte
	size := f.bps * f.spc
	for c < fatEOCMin {
		if c < 2 || int(c) >= f.nclust+2 || len(out) > f.nclust {
			return nil, fmt.Errorf("ESP: cluster chain reaches invalid cluster 0x%x", c)
		}
		off := f.dataOff + int(c-2)*size
		out = append(out, f.b[off:off+size])
		c = f.next(c)
	}
	return out, nil
}

// fixFAT32 repairs two defects of go-diskfs v1.9.4's FAT32 writer that
// fsck.fat reports: the ".." entry of a directory in the root must name
// cluster 0 (§6.7: "..", when the parent is the root, has cluster 0), and
// the FSInfo free-cluster count and next-free hint are left unset.
func fixFAT32(b []byte) error {
	f, err := openFAT32(b)
	if err != nil {
		return err
	}
	root, err := f.chain(f.rootClus)
	if err != nil {
		return err
	}
	for _, clus := range root {
		for off := 0; off+dirEntrySize <= len(clus); off += dirEntrySize {
			e := clus[off : off+dirEntrySize]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xe5 || e[dirAttr] == attrLongName || e[dirAttr]&attrDirectory == 0 || e[0] == '.' {
				continue
			}
			if err := f.fixParentOfRootChild(entryCluster(e)); err != nil {
				return err
			}
		}
	}
	f.fixFSInfo()
	return nil
}

func entryCluster(e []byte) uint32 {
	le := binary.LittleEndian
	return uint32(le.Uint16(e[dirFstClusHI:]))<<16 | uint32(le.Uint16(e[dirFstClusLO:]))
}

func (f *fat32) fixParentOfRootChild(c uint32) error {
	clus, err := f.chain(c)
	if err != nil {
		return err
	}
	dotdot := clus[0][dirEntrySize : 2*dirEntrySize]
	if string(dotdot[:11]) != "..         " {
		return fmt.Errorf("ESP: directory at cluster 0x%x has no '..' entry in its second slot", c)
	}
	binary.LittleEndian.PutUint16(dotdot[dirFstClusHI:], 0)
	binary.LittleEndian.PutUint16(dotdot[dirFstClusLO:], 0)
	return nil
}

func (f *fat32) fixFSInfo() {
	free, first := uint32(0), uint32(0xffffffff)
	for c := uint32(2); c < uint32(f.nclust+2); c++ {
		if f.next(c) == 0 {
			free++
			first = min(first, c)
		}
	}
	le := binary.LittleEndian
	sec := int(le.Uint16(f.b[bpbFSInfo:]))
	for _, s := range []int{sec, sec + fat32BackupBoot} {
		fsi := f.b[s*f.bps : (s+1)*f.bps]
		if le.Uint32(fsi) != fsiLeadSig {
			continue
		}
		le.PutUint32(fsi[fsiFreeCount:], free)
		le.PutUint32(fsi[fsiNxtFree:], first)
	}
}
