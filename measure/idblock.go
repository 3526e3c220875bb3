package measure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
)

// SNP ID block and ID authentication information, SEV-SNP Firmware ABI
// Specification (AMD #56860) rev 1.55: section 8.18 SNP_LAUNCH_FINISH,
// Table 75 (ID_BLOCK), Table 76 (ID_AUTH_INFO), and chapter 10 for the
// ECDSA P-384 public key (Table 120) and signature (Table 119) formats,
// whose integers are little-endian and zero-padded to 72 bytes.
const (
	SizeofIDBlock     = 0x60
	SizeofIDAuth      = 0x1000
	SizeofSNPPubKey   = 0x404
	SizeofSNPSig      = 0x200
	snpECComponentLen = 0x48

	// IDBlockVersion is the only ID block version the ABI defines.
	IDBlockVersion = 1
	// KeyAlgoECDSAP384SHA384 is ID_KEY_ALGO/AUTH_KEY_ALGO 1.
	KeyAlgoECDSAP384SHA384 = 1
	// curveP384 is the CURVE field value for P-384 (Table 120).
	curveP384 = 2

	idAuthBlockSig  = 0x040
	idAuthIDKey     = 0x240
	idAuthIDKeySig  = 0x680
	idAuthAuthorKey = 0x880
)

// IDBlock is the SNP ID block a guest owner signs; the PSP checks it at
// SNP_LAUNCH_FINISH and copies the key digests into every report.
type IDBlock struct {
	LaunchDigest SNPDigest
	FamilyID     [16]byte
	ImageID      [16]byte
	Version      uint32 // IDBlockVersion
	GuestSVN     uint32
	Policy       uint64 // guest policy (ABI Table 9)
}

// MarshalBinary encodes the 96-byte ID block.
func (b *IDBlock) MarshalBinary() ([]byte, error) {
	out := slices.Concat(b.LaunchDigest[:], b.FamilyID[:], b.ImageID[:])
	out = binary.LittleEndian.AppendUint32(out, b.Version)
	out = binary.LittleEndian.AppendUint32(out, b.GuestSVN)
	return binary.LittleEndian.AppendUint64(out, b.Policy), nil
}

// ParseIDBlock decodes a 96-byte ID block.
func ParseIDBlock(p []byte) (*IDBlock, error) {
	if len(p) != SizeofIDBlock {
		return nil, fmt.Errorf("ID block is %d bytes, want %d", len(p), SizeofIDBlock)
	}
	b := &IDBlock{LaunchDigest: SNPDigest(p[0:48]), FamilyID: [16]byte(p[48:64]), ImageID: [16]byte(p[64:80]),
		Version: binary.LittleEndian.Uint32(p[80:84]), GuestSVN: binary.LittleEndian.Uint32(p[84:88]),
		Policy: binary.LittleEndian.Uint64(p[88:96])}
	if b.Version != IDBlockVersion {
		return nil, fmt.Errorf("ID block VERSION at offset 0x50 is %d, want %d", b.Version, IDBlockVersion)
	}
	return b, nil
}

// MarshalSNPPublicKey encodes a P-384 public key in the SNP format.
func MarshalSNPPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P384() {
		return nil, errors.New("SNP ID keys must be ECDSA P-384")
	}
	pt, err := pub.Bytes() // 0x04 || X || Y, big-endian
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	out := make([]byte, SizeofSNPPubKey)
	binary.LittleEndian.PutUint32(out, curveP384)
	putLE(out[4:4+snpECComponentLen], pt[1:49])
	putLE(out[4+snpECComponentLen:4+2*snpECComponentLen], pt[49:97])
	return out, nil
}

// ParseSNPPublicKey decodes an SNP-format P-384 public key.
func ParseSNPPublicKey(p []byte) (*ecdsa.PublicKey, error) {
	if len(p) != SizeofSNPPubKey {
		return nil, fmt.Errorf("SNP public key is %d bytes, want %d", len(p), SizeofSNPPubKey)
	}
	if c := binary.LittleEndian.Uint32(p); c != curveP384 {
		return nil, fmt.Errorf("SNP public key CURVE is %d, want %d (P-384)", c, curveP384)
	}
	for _, r := range [][2]int{{4 + 48, 4 + snpECComponentLen}, {4 + snpECComponentLen + 48, SizeofSNPPubKey}} {
		if i := slices.IndexFunc(p[r[0]:r[1]], func(c byte) bool { return c != 0 }); i >= 0 {
			return nil, fmt.Errorf("SNP public key byte at offset 0x%x must be zero", r[0]+i)
		}
	}
	pt := append([]byte{4}, getLE(p[4:4+snpECComponentLen], 48)...)
	pt = append(pt, getLE(p[4+snpECComponentLen:4+2*snpECComponentLen], 48)...)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P384(), pt)
}

// SNPKeyDigest is the SHA-384 of the SNP-format public key: the
// ID_KEY_DIGEST or AUTHOR_KEY_DIGEST an attestation report carries.
func SNPKeyDigest(pub *ecdsa.PublicKey) (SNPDigest, error) {
	k, err := MarshalSNPPublicKey(pub)
	if err != nil {
		return SNPDigest{}, err
	}
	return sha512.Sum384(k), nil
}

// IDAuth is the ID authentication information structure.
type IDAuth struct {
	IDKeyAlgo, AuthKeyAlgo uint32
	BlockSig               [SizeofSNPSig]byte
	IDKey                  [SizeofSNPPubKey]byte
	IDKeySig               [SizeofSNPSig]byte
	AuthorKey              [SizeofSNPPubKey]byte // zero without an author key
}

// MarshalBinary encodes the 4 KiB ID authentication information.
func (a *IDAuth) MarshalBinary() ([]byte, error) {
	out := make([]byte, SizeofIDAuth)
	binary.LittleEndian.PutUint32(out[0:], a.IDKeyAlgo)
	binary.LittleEndian.PutUint32(out[4:], a.AuthKeyAlgo)
	copy(out[idAuthBlockSig:], a.BlockSig[:])
	copy(out[idAuthIDKey:], a.IDKey[:])
	copy(out[idAuthIDKeySig:], a.IDKeySig[:])
	copy(out[idAuthAuthorKey:], a.AuthorKey[:])
	return out, nil
}

// ParseIDAuth decodes the ID authentication information and checks its
// reserved ranges are zero.
func ParseIDAuth(p []byte) (*IDAuth, error) {
	if len(p) != SizeofIDAuth {
		return nil, fmt.Errorf("ID auth is %d bytes, want %d", len(p), SizeofIDAuth)
	}
	for _, r := range [][2]int{{8, idAuthBlockSig}, {idAuthIDKey + SizeofSNPPubKey, idAuthIDKeySig}, {idAuthAuthorKey + SizeofSNPPubKey, SizeofIDAuth}} {
		if i := slices.IndexFunc(p[r[0]:r[1]], func(c byte) bool { return c != 0 }); i >= 0 {
			return nil, fmt.Errorf("ID auth reserved byte at offset 0x%x is not zero", r[0]+i)
		}
	}
	a := &IDAuth{IDKeyAlgo: binary.LittleEndian.Uint32(p[0:]), AuthKeyAlgo: binary.LittleEndian.Uint32(p[4:])}
	copy(a.BlockSig[:], p[idAuthBlockSig:])
	copy(a.IDKey[:], p[idAuthIDKey:])
	copy(a.IDKeySig[:], p[idAuthIDKeySig:])
	copy(a.AuthorKey[:], p[idAuthAuthorKey:])
	return a, nil
}

// SignIDBlock signs b with idKey and, if authorKey is non-nil, signs the
// ID key with authorKey. rand is the signature randomness (crypto/rand in
// production); ECDSA signatures differ on each call.
func SignIDBlock(b *IDBlock, idKey, authorKey *ecdsa.PrivateKey, rand io.Reader) (*IDAuth, error) {
	blk, _ := b.MarshalBinary()
	idPub, err := MarshalSNPPublicKey(&idKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ID key: %w", err)
	}
	a := &IDAuth{IDKeyAlgo: KeyAlgoECDSAP384SHA384, IDKey: [SizeofSNPPubKey]byte(idPub)}
	if a.BlockSig, err = snpSign(idKey, blk, rand); err != nil {
		return nil, err
	}
	if authorKey == nil {
		return a, nil
	}
	authPub, err := MarshalSNPPublicKey(&authorKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("author key: %w", err)
	}
	a.AuthKeyAlgo, a.AuthorKey = KeyAlgoECDSAP384SHA384, [SizeofSNPPubKey]byte(authPub)
	if a.IDKeySig, err = snpSign(authorKey, idPub, rand); err != nil {
		return nil, err
	}
	return a, nil
}

// VerifyIDAuth checks the block signature and, when an author key is
// present, the ID key signature.
func VerifyIDAuth(b *IDBlock, a *IDAuth) error {
	blk, _ := b.MarshalBinary()
	idPub, err := ParseSNPPublicKey(a.IDKey[:])
	if err != nil {
		return fmt.Errorf("ID key: %w", err)
	}
	if a.IDKeyAlgo != KeyAlgoECDSAP384SHA384 || !snpVerify(idPub, blk, a.BlockSig[:]) {
		return errors.New("ID block signature does not verify with the ID key")
	}
	if a.AuthKeyAlgo == 0 && a.AuthorKey == [SizeofSNPPubKey]byte{} {
		return nil
	}
	authPub, err := ParseSNPPublicKey(a.AuthorKey[:])
	if err != nil {
		return fmt.Errorf("author key: %w", err)
	}
	if a.AuthKeyAlgo != KeyAlgoECDSAP384SHA384 || !snpVerify(authPub, a.IDKey[:], a.IDKeySig[:]) {
		return errors.New("ID key signature does not verify with the author key")
	}
	return nil
}

type ecdsaSig struct{ R, S *big.Int }

func snpSign(k *ecdsa.PrivateKey, msg []byte, rand io.Reader) ([SizeofSNPSig]byte, error) {
	var out [SizeofSNPSig]byte
	h := sha512.Sum384(msg)
	der, err := ecdsa.SignASN1(rand, k, h[:])
	if err != nil {
		return out, fmt.Errorf("signing: %w", err)
	}
	var s ecdsaSig
	if _, err := asn1.Unmarshal(der, &s); err != nil {
		return out, fmt.Errorf("decoding signature: %w", err)
	}
	putLE(out[0:snpECComponentLen], s.R.FillBytes(make([]byte, 48)))
	putLE(out[snpECComponentLen:2*snpECComponentLen], s.S.FillBytes(make([]byte, 48)))
	return out, nil
}

func snpVerify(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	r := new(big.Int).SetBytes(getLE(sig[0:snpECComponentLen], snpECComponentLen))
	s := new(big.Int).SetBytes(getLE(sig[snpECComponentLen:2*snpECComponentLen], snpECComponentLen))
	der, err := asn1.Marshal(ecdsaSig{r, s})
	if err != nil {
		return false
	}
	h := sha512.Sum384(msg)
	return ecdsa.VerifyASN1(pub, h[:], der)
}

// putLE writes the big-endian integer be into dst little-endian.
func putLE(dst, be []byte) {
	for i, c := range be {
		dst[len(be)-1-i] = c
	}
}

// getLE returns the low n bytes of the little-endian integer le as
// big-endian.
func getLE(le []byte, n int) []byte {
	out := make([]byte, n)
	for i := range n {
		out[n-1-i] = le[i]
	}
	return out
}
