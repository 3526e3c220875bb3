package builder_test

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/builder"
)

// ExampleFirmwareKey prints the cache key of the pinned OvmfPkgX64 build:
// it changes with any source digest, flag, toolchain version or patch, and
// with nothing else (not the output pin, the job count or the host).
func ExampleFirmwareKey() {
	b, err := os.ReadFile("testdata/firmware/ovmfx64.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := builder.ParseFirmwareSource(b)
	if err != nil {
		fmt.Println(err)
		return
	}
	key, err := builder.FirmwareKey(s, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Platform, key)
	// Output: OvmfPkg/OvmfPkgX64.dsc 8d9feff5994f6da86e73fd1b383866473fd79551cc22fcbad0d16e60ecb0852d
}
