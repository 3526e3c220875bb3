// Package initrd assembles u-root initramfs images and writes them as
// deterministic newc cpio archives.
package initrd
