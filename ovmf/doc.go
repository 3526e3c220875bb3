// Package ovmf parses OVMF firmware images: the footer GUID table, the SEV
// metadata and reset block, the SEV hash table entry and the TDX metadata.
// It performs no I/O: every parser takes []byte.
package ovmf
