package ovmf

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// SizeofGUID is the size of an EFI_GUID (UEFI 2.10, appendix A).
const SizeofGUID = 16

// GUID is an EFI_GUID in its on-disk byte order: the first three fields
// (Data1 uint32, Data2 uint16, Data3 uint16) little-endian, the last eight
// bytes as written (UEFI 2.10, appendix A; the "mixed-endian" layout, like
// Python's uuid.UUID.bytes_le).
type GUID [SizeofGUID]byte

// ParseGUID parses the registry form "aabbccdd-eeff-gghh-iijj-kkllmmnnoopp"
// into on-disk byte order.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("parsing GUID %q: want form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	var be [SizeofGUID]byte
	hexs := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(be[:], []byte(hexs)); err != nil {
		return g, fmt.Errorf("parsing GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(be[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(be[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(be[6:8]))
	copy(g[8:], be[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a malformed
// literal, so use it only for package-level GUID values.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the lowercase registry form.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}
