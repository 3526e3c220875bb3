package measure

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// IMA's boot_aggregate (Linux 6.1 security/integrity/ima/ima_crypto.c
// ima_calc_boot_aggregate, ima_init.c ima_add_boot_aggregate).
//
// At boot IMA records one entry named "boot_aggregate" whose file digest is
// the hash of PCRs 0-9 read from the TPM bank of IMA's hash algorithm
// (sha256 in Debian's CONFIG_IMA_DEFAULT_HASH; PCRs 8 and 9 are included
// for banks other than SHA-1). The entry's template data (Debian's default
// template "ima-sig": fields d-ng, n-ng, sig) is hashed with each bank's
// algorithm and extended into PCR 10 of that bank
// (ima_calc_field_array_hash: every field is prefixed with its u32 length).

// IMABootAggregate returns the sha256 boot_aggregate over PCRs 0-9 of the
// sha256 bank.
func IMABootAggregate(sha256PCRs map[uint32][]byte) ([]byte, error) {
	var b []byte
	for pcr := range uint32(10) {
		v, ok := sha256PCRs[pcr]
		if !ok || len(v) != 32 {
			return nil, fmt.Errorf("boot_aggregate: no sha256 value for PCR%d", pcr)
		}
		b = append(b, v...)
	}
	return AlgSHA256.Sum(b), nil
}

// IMABootAggregateTemplate returns the ima-sig template data of the
// boot_aggregate entry as IMA hashes it: u32 length + "sha256:\0" + digest,
// u32 length + "boot_aggregate\0", u32 0 (no signature).
func IMABootAggregateTemplate(aggregate []byte) []byte {
	dng := append([]byte("sha256:\x00"), aggregate...)
	nng := []byte("boot_aggregate\x00")
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(dng)))
	b = append(b, dng...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(nng)))
	b = append(b, nng...)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// DebianKernelHashes are the hash algorithms built into Debian's 6.1 kernel
// (CONFIG_CRYPTO_SHA1=y, CONFIG_CRYPTO_SHA256=y; SHA-384/512 come from the
// sha512 module, CONFIG_CRYPTO_SHA512=m, not loaded when IMA initializes).
var DebianKernelHashes = []HashAlg{AlgSHA1, AlgSHA256}

// IMAPCR10 returns PCR 10 of bank alg after the boot_aggregate entry, the
// only IMA entry before init runs a measured file. builtin lists the hash
// algorithms the kernel has when IMA initializes: for a bank whose algorithm
// is missing, IMA extends the SHA-1 template digest zero-padded to the bank's
// size (ima_calc_field_array_hash, "for unmapped TPM algorithms digest is
// still a padded SHA1").
func IMAPCR10(aggregate []byte, alg HashAlg, builtin []HashAlg) []byte {
	tmpl := IMABootAggregateTemplate(aggregate)
	var d []byte
	if slices.Contains(builtin, alg) {
		d = alg.Sum(tmpl)
	} else {
		d = make([]byte, alg.Size())
		copy(d, AlgSHA1.Sum(tmpl))
	}
	return Extend(alg, make([]byte, alg.Size()), d)
}
