// Package uki assembles unified kernel images (UKIs): PE/COFF images made of
// the systemd EFI stub plus the .osrel, .cmdline, .uname, .initrd and .linux
// sections the stub reads (systemd UAPI "Unified Kernel Image" spec,
// https://uapi-group.org/specifications/specs/unified_kernel_image/, and the
// Microsoft PE/COFF specification rev 11, sections 3 and 4). It performs no
// I/O and works on []byte only; signing is left to the caller.
//
// It does not strip or rewrite the stub's own sections, does not merge .sbat
// metadata (the stub's .sbat is kept as is) and handles x86-64 PE32+ only.
package uki
