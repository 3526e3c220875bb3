package measure

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mkcvm/mkcvm/internal/vmtest"
)

var (
	kernelMu    sync.Mutex
	kernelBytes []byte
)

// debianKernel returns the Debian 6.1 vmlinuz, extracted once per test
// binary.
func debianKernel(t testing.TB) []byte {
	t.Helper()
	kernelMu.Lock()
	defer kernelMu.Unlock()
	if kernelBytes == nil {
		k, err := os.ReadFile(vmtest.DebianKernel(t))
		if err != nil {
			t.Fatal(err)
		}
		kernelBytes = k
	}
	return kernelBytes
}

// TestKernelDigestRealBoots checks the PCR 4 kernel digest against the
// EV_EFI_BOOT_SERVICES_APPLICATION digests OVMF logged in real boots
// (testdata/provenance/tpm.md, boots b1, b2 and b3072) of the Debian 6.1 kernel.
func TestKernelDigestRealBoots(t *testing.T) {
	k := debianKernel(t)
	for _, tc := range []struct {
		name       string
		memMiB     int
		initrdSize int64
		cmdline    string
		want       string
	}{
		{"1024MiB initrd 2673152", 1024, 2673152, "console=ttyS0 panic=-1", "595118b54557bc4cb4aabc1716ec089ae24bf51a0021b89634e34fc6886bb2e6"},
		{"1536MiB initrd 2796544", 1536, 2796544, "console=ttyS0 panic=-1 quiet foo=bar", "1f465f67039c93abda363a7a762f866b6e35c521f5feae76a1ba3439434dbe71"},
		// 3072 MiB: q35 maps only 2 GiB below 4G; vga=791 sets vid_mode.
		{"3072MiB vga=791 initrd 2673152", 3072, 2673152, "console=ttyS0 panic=-1 quiet vga=791", "f3a8eed6069a02d700d349f5d5b2cf61c06c9087521129ea23438cd5ea2733ef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			below, err := QEMUBelow4G("q35", tc.memMiB)
			if err != nil {
				t.Fatal(err)
			}
			d, err := KernelDigest("vmlinuz", k, QEMULinuxLoad{Cmdline: tc.cmdline, Initrd: true, InitrdSize: tc.initrdSize, BelowFourG: below}, AlgSHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(d); got != tc.want {
				t.Errorf("kernel digest %s, the boot logged %s", got, tc.want)
			}
		})
	}
	// The unpatched file hashes differently: QEMU's edits matter.
	raw, _ := PEImageDigest("vmlinuz", k, AlgSHA256, PadNone)
	if hex.EncodeToString(raw) == "595118b54557bc4cb4aabc1716ec089ae24bf51a0021b89634e34fc6886bb2e6" {
		t.Errorf("unpatched kernel has the patched digest")
	}
}

func TestQEMUPatchKernelFields(t *testing.T) {
	k := debianKernel(t)
	below, _ := QEMUBelow4G("q35", 1024)
	for _, tc := range []struct {
		name    string
		load    QEMULinuxLoad
		vidMode uint16
		ramdisk uint32
		size    uint32
	}{
		// QEMU 7.2 x86_load_linux: initrd_max = below_4g - acpi_data_size - 1
		// (the kernel sets XLF_CAN_BE_LOADED_ABOVE_4G), initrd_addr =
		// (initrd_max - size) & ~4095.
		{"initrd", QEMULinuxLoad{Cmdline: "x", Initrd: true, InitrdSize: 0x1234, BelowFourG: below}, 0xffff, uint32((0x40000000 - 0x28000 - 1 - 0x1234) &^ 4095), 0x1234},
		{"no initrd", QEMULinuxLoad{Cmdline: "x", BelowFourG: below}, 0xffff, 0, 0},
		{"vga=normal", QEMULinuxLoad{Cmdline: "a vga=normal", BelowFourG: below}, 0xffff, 0, 0},
		{"vga=ext", QEMULinuxLoad{Cmdline: "vga=ext", BelowFourG: below}, 0xfffe, 0, 0},
		{"vga=0x317", QEMULinuxLoad{Cmdline: "vga=0x317 quiet", BelowFourG: below}, 0x317, 0, 0},
		{"vga=791", QEMULinuxLoad{Cmdline: "vga=791", BelowFourG: below}, 791, 0, 0},
		{"vga=017 octal", QEMULinuxLoad{Cmdline: "vga=017", BelowFourG: below}, 15, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := QEMUPatchKernel("vmlinuz", k, tc.load)
			if err != nil {
				t.Fatal(err)
			}
			le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(img[o:]) }
			le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(img[o:]) }
			if img[0x210] != 0xb0 || img[0x211]&0x81 != 0x81 || le16(0x224) != 0xfe00 || le32(0x228) != 0x20000 {
				t.Errorf("loader fields: type_of_loader %#x loadflags %#x heap_end_ptr %#x cmd_line_ptr %#x", img[0x210], img[0x211], le16(0x224), le32(0x228))
			}
			if le16(0x1fa) != tc.vidMode || le32(0x218) != tc.ramdisk || le32(0x21c) != tc.size {
				t.Errorf("vid_mode %#x ramdisk_image %#x ramdisk_size %#x, want %#x %#x %#x", le16(0x1fa), le32(0x218), le32(0x21c), tc.vidMode, tc.ramdisk, tc.size)
			}
			if len(img) != len(k) || string(img[0x2000:]) != string(k[0x2000:]) {
				t.Errorf("bytes beyond the 8 KiB header buffer changed")
			}
		})
	}
}

func TestQEMUBelow4G(t *testing.T) {
	for _, tc := range []struct {
		machine string
		mem     int
		want    uint64
		err     string
	}{
		{"q35", 1024, 1 << 30, ""},
		{"q35", 2816, 0xb0000000 - 0x30000000, ""}, // 2816 MiB = 0xb0000000: q35 switches to 2 GiB low
		{"q35", 4096, 0x80000000, ""},
		{"pc-q35-7.2", 512, 512 << 20, ""},
		{"pc", 3584, 0xc0000000, ""},
		{"pc", 3000, 3000 << 20, ""},
		{"microvm", 1024, 0, "only q35 and pc"},
		{"q35", 0, 0, "must be positive"},
	} {
		got, err := QEMUBelow4G(tc.machine, tc.mem)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s/%d: error %v, want %q", tc.machine, tc.mem, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s/%d: %#x, %v; want %#x", tc.machine, tc.mem, got, err, tc.want)
		}
	}
}

func TestQEMUPatchKernelErrors(t *testing.T) {
	if _, err := QEMUPatchKernel("k", make([]byte, 100), QEMULinuxLoad{BelowFourG: 1 << 30}); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short kernel: %v", err)
	}
	if _, err := QEMUPatchKernel("k", make([]byte, 4096), QEMULinuxLoad{BelowFourG: 1 << 30}); err == nil || !strings.Contains(err.Error(), "offset 0x202: header") {
		t.Errorf("no HdrS: %v", err)
	}
}

func FuzzQEMUPatchKernel(f *testing.F) {
	seed := make([]byte, 0x1000)
	copy(seed[0x202:], "HdrS")
	seed[0x206], seed[0x207], seed[0x211], seed[0x1f1] = 0x0f, 0x02, 1, 3
	f.Add(seed, "vga=0x317", int64(100))
	f.Fuzz(func(t *testing.T, k []byte, cmdline string, initrd int64) {
		if len(k) > 1<<16 {
			return
		}
		out, err := QEMUPatchKernel("fuzz", k, QEMULinuxLoad{Cmdline: cmdline, Initrd: initrd >= 0, InitrdSize: initrd, BelowFourG: 1 << 30})
		if err == nil && len(out) != len(k) {
			t.Fatalf("patched image is %d bytes, input %d", len(out), len(k))
		}
	})
}
