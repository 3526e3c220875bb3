package builder

import (
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// Disk geometry (UEFI 2.10 §5.3: GPT; 512-byte logical blocks).
const (
	diskSectorSize   = 512
	espFirstLBA      = 2048      // 1 MiB aligned, as sgdisk/parted place the first partition
	gptReservedLBAs  = 33        // backup partition array (32 LBAs of 128 entries) + backup header
	minESPSizeMiB    = 34        // FAT32 needs >= 65525 clusters of 512 bytes (go-diskfs' size table)
	fat32VolIDOffset = 0x43      // BS_VolID in the FAT32 boot sector (Microsoft FAT spec, "FAT32 BPB")
	bpbHiddSec       = 0x1c      // BPB_HiddSec (Microsoft FAT spec, "BPB")
	fat32BackupBoot  = 6         // BPB_BkBootSec as go-diskfs writes it
	fatEpoch         = 315532800 // 1980-01-01T00:00:00Z, the earliest FAT timestamp
)

// DiskLayout fixes every identifier and size of the disk image, so the
// image is a function of the layout and the files alone.
type DiskLayout struct {
	SizeMiB      int    // whole disk
	DiskGUID     string // GPT disk GUID
	ESPGUID      string // GPT unique partition GUID of the ESP
	ESPName      string // GPT partition name (UTF-16 in the entry)
	VolumeLabel  string // FAT volume label, up to 11 characters
	VolumeSerial uint32 // FAT volume serial number
	Epoch        int64  // timestamp of every FAT directory entry
}

// ESPFile is one file placed on the ESP. Paths are '/'-separated and
// relative, e.g. "EFI/BOOT/BOOTX64.EFI".
type ESPFile struct {
	Path string
	Data []byte
}

// diskfsEnvMu serializes builds: go-diskfs reads FAT timestamps from the
// process environment (SOURCE_DATE_EPOCH), which is process-global.
var diskfsEnvMu sync.Mutex

// BuildESPDisk returns a raw disk image holding a GPT with one EFI system
// partition formatted FAT32 and containing files. Directories are created
// before their children and entries are written in sorted path order.
func BuildESPDisk(l DiskLayout, files []ESPFile) ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b ESPFile) int { return strings.Compare(a.Path, b.Path) })
	total := int64(l.SizeMiB) << 20
	m := newMemDisk(total)
	d, err := diskfs.OpenBackend(m, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return nil, fmt.Errorf("opening in-memory disk: %w", err)
	}
	lastUsable := uint64(total/diskSectorSize) - gptReservedLBAs - 1
	end := (lastUsable+1)/espFirstLBA*espFirstLBA - 1 // end on a 1 MiB boundary
	table := &gpt.Table{
		LogicalSectorSize: diskSectorSize, PhysicalSectorSize: diskSectorSize,
		ProtectiveMBR: true, GUID: l.DiskGUID,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: espFirstLBA, End: end, Type: gpt.EFISystemPartition,
			Name: l.ESPName, GUID: l.ESPGUID,
		}},
	}
	if err := d.Partition(table); err != nil {
		return nil, fmt.Errorf("writing GPT: %w", err)
	}
	if err := writeFAT(d, l, files); err != nil {
		return nil, err
	}
	espOff := int64(espFirstLBA * diskSectorSize)
	for _, sec := range []int64{0, fat32BackupBoot} {
		bs := m.b[espOff+sec*diskSectorSize:]
		binary.LittleEndian.PutUint32(bs[fat32VolIDOffset:], l.VolumeSerial)
		// BPB_HiddSec: sectors before the volume (its partition's start).
		binary.LittleEndian.PutUint32(bs[bpbHiddSec:], espFirstLBA)
	}
	if err := fixFAT32(m.b[espOff : espOff+int64(end-espFirstLBA+1)*diskSectorSize]); err != nil {
		return nil, err
	}
	return m.b, nil
}

func (l DiskLayout) validate() error {
	if l.SizeMiB < minESPSizeMiB+2 {
		return fmt.Errorf("disk size %d MiB: need at least %d MiB for a FAT32 ESP", l.SizeMiB, minESPSizeMiB+2)
	}
	for name, g := range map[string]string{"disk_guid": l.DiskGUID, "esp_guid": l.ESPGUID} {
		if _, err := ovmf.ParseGUID(g); err != nil {
			return fmt.Errorf("disk %s %q: %w", name, g, err)
		}
	}
	if len(l.VolumeLabel) > 11 {
		return fmt.Errorf("disk volume_label %q: longer than 11 characters", l.VolumeLabel)
	}
	if l.Epoch < fatEpoch {
		return fmt.Errorf("epoch %d: FAT timestamps cannot encode dates before 1980-01-01 (%d)", l.Epoch, fatEpoch)
	}
	return nil
}

func writeFAT(d *disk.Disk, l DiskLayout, files []ESPFile) error {
	diskfsEnvMu.Lock()
	defer diskfsEnvMu.Unlock()
	old, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(l.Epoch, 10))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", old)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: l.VolumeLabel, Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("creating FAT32 ESP: %w", err)
	}
	made := map[string]bool{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if p != f.Path || path.IsAbs(p) || strings.HasPrefix(p, "..") {
			return fmt.Errorf("ESP file %q: want a clean relative path", f.Path)
		}
		for _, dir := range parentDirs(p) {
			if made[dir] {
				continue
			}
			if err := fs.Mkdir("/" + dir); err != nil {
				return fmt.Errorf("ESP mkdir %q: %w", dir, err)
			}
			made[dir] = true
		}
		w, err := fs.OpenFile("/"+p, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("ESP create %q: %w", p, err)
		}
		if _, err := w.Write(f.Data); err != nil {
			w.Close()
			return fmt.Errorf("ESP write %q: %w", p, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("ESP close %q: %w", p, err)
		}
	}
	return nil
}

// parentDirs lists the directories above p, outermost first.
func parentDirs(p string) []string {
	var out []string
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		out = append([]string{dir}, out...)
	}
	return out
}
