package initrd_test

import (
	"crypto/sha256"
	"fmt"

	"github.com/mkcvm/mkcvm/initrd"
)

// A tiny initramfs: the same records and epoch always give the same
// archive. The digest equals GNU cpio 2.13's "-o -H newc --reproducible
// --owner=0:0" output of the same tree without its 512-byte block padding
// (testdata/provenance/foundation.md).
func ExampleMarshal() {
	b, err := initrd.Marshal(1700000000, []initrd.Record{
		initrd.File("init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		initrd.File("etc/motd", 0o644, []byte("hello\n")),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes, sha256 %x\n", len(b), sha256.Sum256(b))
	// Output: 504 bytes, sha256 f3866accfafb1aecf200b052cd54d47f318a2b67c0112523660f45ff785fa648
}
