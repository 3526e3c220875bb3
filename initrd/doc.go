// Package initrd assembles initramfs images and writes them as
// deterministic newc cpio archives.
//
// The archive format is the "new ASCII" (newc, magic 070701) cpio format
// read by the Linux initramfs unpacker (Documentation/driver-api/
// early-userspace/buffer-format.rst; cpio(5)). Write canonicalizes every
// record (sorted, directories first, uid/gid 0, mtime = the build epoch,
// normalized inode numbers, nlink and device numbers) and produces the same
// bytes as GNU cpio --reproducible for the same tree; callers cannot skip
// that step. Compress applies one pinned gzip or zstd implementation and
// level. GoBuild compiles the in-image Go programs with an explicit build
// environment and caches them by every build input.
//
// Left out: the crc (070702) and old binary/odc formats, hard links and
// extended attributes. The in-guest runner library lives in initrd/runner.
package initrd
