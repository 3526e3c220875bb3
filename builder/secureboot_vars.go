package builder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/mkcvm/mkcvm/ovmf"
)

// edk2 variable store layout: PI 1.8 vol 3 §3.2.1 (EFI_FIRMWARE_VOLUME_HEADER)
// and edk2 MdeModulePkg/Include/Guid/VariableFormat.h (VARIABLE_STORE_HEADER,
// AUTHENTICATED_VARIABLE_HEADER) at edk2-stable202211, the edk2 release
// Debian's ovmf 2022.11 is built from.
const (
	fvSignatureOffset     = 40 // "_FVH"
	fvHeaderLengthOffset  = 48
	fvFileSystemGUIDOff   = 16
	sizeofVarStoreHeader  = 28
	varStoreFormatted     = 0x5a
	varStoreHealthy       = 0xfe
	varStartID            = 0x55aa
	sizeofAuthVarHeader   = 60
	varHeaderAlignment    = 4
	VarStateAdded         = 0x3f // VAR_ADDED with the header-valid bit cleared
	efiTimeSize           = 16
	varAttrNV             = 0x01
	varAttrBS             = 0x02
	varAttrRT             = 0x04
	varAttrTimeBasedAuth  = 0x20
	secureBootVarAttrs    = varAttrNV | varAttrBS | varAttrRT | varAttrTimeBasedAuth
	authVarHeaderStateOff = 2
)

// GUIDs of the variable store and of the Secure Boot variables.
var (
	// gEfiSystemNvDataFvGuid: the FV holding the NV variable store.
	systemNvDataFvGUID = ovmf.MustParseGUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
	// gEfiAuthenticatedVariableGuid: store of AUTHENTICATED_VARIABLE_HEADERs.
	authenticatedVariableGUID = ovmf.MustParseGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	// EFIGlobalVariableGUID owns PK, KEK and SecureBoot (UEFI 2.10 §3.3).
	EFIGlobalVariableGUID = ovmf.MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// EFIImageSecurityDatabaseGUID owns db and dbx (UEFI 2.10 §32.6.1).
	EFIImageSecurityDatabaseGUID = ovmf.MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
)

// ErrVarExists means the template already holds an active Secure Boot
// variable that enrolment would shadow.
var ErrVarExists = errors.New("variable already present")

// AuthVariable is one AUTHENTICATED_VARIABLE_HEADER plus name and data.
type AuthVariable struct {
	Offset         int64 // file offset of the header (decode only)
	State          uint8
	Attributes     uint32
	MonotonicCount uint64
	TimeStamp      [efiTimeSize]byte // EFI_TIME
	PubKeyIndex    uint32
	Name           string
	Vendor         ovmf.GUID
	Data           []byte
}

// VarStore is the decoded NV variable store of an OVMF VARS image.
type VarStore struct {
	Vars     []AuthVariable
	storeOff int // offset of VARIABLE_STORE_HEADER
	size     int // VARIABLE_STORE_HEADER.Size
	end      int // offset just past the last variable (aligned)
}

// ParseVarStore decodes the authenticated variable store at the start of an
// OVMF VARS image (e.g. OVMF_VARS_4M.fd). input names fd in errors.
func ParseVarStore(input string, fd []byte) (*VarStore, error) {
	if len(fd) < fvHeaderLengthOffset+2 || string(fd[fvSignatureOffset:fvSignatureOffset+4]) != "_FVH" {
		return nil, &ovmf.FormatError{Input: input, Offset: fvSignatureOffset, Field: "EFI_FIRMWARE_VOLUME_HEADER.Signature", Reason: "want \"_FVH\""}
	}
	if g := ovmf.GUID(fd[fvFileSystemGUIDOff : fvFileSystemGUIDOff+16]); g != systemNvDataFvGUID {
		return nil, &ovmf.FormatError{Input: input, Offset: fvFileSystemGUIDOff, Field: "EFI_FIRMWARE_VOLUME_HEADER.FileSystemGuid", Reason: fmt.Sprintf("%s, want %s (NV data FV)", g, systemNvDataFvGUID)}
	}
	s := &VarStore{storeOff: int(binary.LittleEndian.Uint16(fd[fvHeaderLengthOffset:]))}
	if s.storeOff+sizeofVarStoreHeader > len(fd) {
		return nil, &ovmf.FormatError{Input: input, Offset: fvHeaderLengthOffset, Field: "EFI_FIRMWARE_VOLUME_HEADER.HeaderLength", Reason: fmt.Sprintf("0x%x leaves no room for the variable store header", s.storeOff)}
	}
	h := fd[s.storeOff:]
	if g := ovmf.GUID(h[:16]); g != authenticatedVariableGUID {
		return nil, &ovmf.FormatError{Input: input, Offset: int64(s.storeOff), Field: "VARIABLE_STORE_HEADER.Signature", Reason: fmt.Sprintf("%s, want gEfiAuthenticatedVariableGuid", g)}
	}
	s.size = int(binary.LittleEndian.Uint32(h[16:]))
	if s.size < sizeofVarStoreHeader || s.storeOff+s.size > len(fd) {
		return nil, &ovmf.FormatError{Input: input, Offset: int64(s.storeOff + 16), Field: "VARIABLE_STORE_HEADER.Size", Reason: fmt.Sprintf("0x%x does not fit the 0x%x-byte image", s.size, len(fd))}
	}
	if h[20] != varStoreFormatted || h[21] != varStoreHealthy {
		return nil, &ovmf.FormatError{Input: input, Offset: int64(s.storeOff + 20), Field: "VARIABLE_STORE_HEADER.Format/State", Reason: fmt.Sprintf("0x%02x/0x%02x, want 0x5a/0xfe", h[20], h[21])}
	}
	return s, s.parseVars(input, fd)
}

func (s *VarStore) parseVars(input string, fd []byte) error {
	limit := s.storeOff + s.size
	off := s.storeOff + sizeofVarStoreHeader
	le := binary.LittleEndian
	for off+sizeofAuthVarHeader <= limit && le.Uint16(fd[off:]) == varStartID {
		h := fd[off : off+sizeofAuthVarHeader]
		v := AuthVariable{Offset: int64(off), State: h[2], Attributes: le.Uint32(h[4:]), MonotonicCount: le.Uint64(h[8:]), PubKeyIndex: le.Uint32(h[32:]), Vendor: ovmf.GUID(h[44:60])}
		copy(v.TimeStamp[:], h[16:32])
		nameSize, dataSize := uint64(le.Uint32(h[36:])), uint64(le.Uint32(h[40:]))
		end := uint64(off) + sizeofAuthVarHeader + nameSize + dataSize
		if end > uint64(limit) || nameSize%2 != 0 {
			return &ovmf.FormatError{Input: input, Offset: int64(off + 36), Field: "AUTHENTICATED_VARIABLE_HEADER.NameSize/DataSize", Reason: fmt.Sprintf("0x%x/0x%x run past the store end 0x%x", nameSize, dataSize, limit)}
		}
		nameOff := off + sizeofAuthVarHeader
		v.Name = decodeUCS2(fd[nameOff : nameOff+int(nameSize)])
		v.Data = bytes.Clone(fd[nameOff+int(nameSize) : int(end)])
		s.Vars = append(s.Vars, v)
		off = int(alignUp64(end, varHeaderAlignment))
	}
	s.end = min(off, limit)
	for i := s.end; i < limit; i++ {
		if fd[i] != 0xff {
			return &ovmf.FormatError{Input: input, Offset: int64(i), Field: "variable store free space", Reason: fmt.Sprintf("byte 0x%02x, want erased 0xff", fd[i])}
		}
	}
	return nil
}

func alignUp64(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func decodeUCS2(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// UCS2Name encodes a variable name as NUL-terminated UTF-16LE.
func UCS2Name(name string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(name)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// Active returns the live (VAR_ADDED) variable name/vendor, if any.
func (s *VarStore) Active(name string, vendor ovmf.GUID) (AuthVariable, bool) {
	for _, v := range s.Vars {
		if v.Name == name && v.Vendor == vendor && v.State == VarStateAdded {
			return v, true
		}
	}
	return AuthVariable{}, false
}

// MarshalBinary encodes v as header, name and data (unpadded).
func (v AuthVariable) MarshalBinary() ([]byte, error) {
	name := UCS2Name(v.Name)
	b := make([]byte, sizeofAuthVarHeader, sizeofAuthVarHeader+len(name)+len(v.Data))
	le := binary.LittleEndian
	le.PutUint16(b[0:], varStartID)
	b[2] = v.State
	le.PutUint32(b[4:], v.Attributes)
	le.PutUint64(b[8:], v.MonotonicCount)
	copy(b[16:32], v.TimeStamp[:])
	le.PutUint32(b[32:], v.PubKeyIndex)
	le.PutUint32(b[36:], uint32(len(name)))
	le.PutUint32(b[40:], uint32(len(v.Data)))
	copy(b[44:60], v.Vendor[:])
	b = append(b, name...)
	return append(b, v.Data...), nil
}

// EFITime encodes t (UTC) as an EFI_TIME (UEFI 2.10 §8.3), TimeZone
// EFI_UNSPECIFIED_TIMEZONE is not used: authenticated variables carry UTC
// with TimeZone 0.
func EFITime(t time.Time) [efiTimeSize]byte {
	t = t.UTC()
	var b [efiTimeSize]byte
	binary.LittleEndian.PutUint16(b[0:], uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	return b
}

// AppendVars returns a copy of the VARS image fd with vars appended to its
// store, each in state VAR_ADDED. It refuses to shadow an active variable.
func AppendVars(input string, fd []byte, vars []AuthVariable) ([]byte, error) {
	s, err := ParseVarStore(input, fd)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(fd)
	off := s.end
	for _, v := range vars {
		if old, ok := s.Active(v.Name, v.Vendor); ok {
			return nil, fmt.Errorf("%s: offset 0x%x: %w: %s (%s)", input, old.Offset, ErrVarExists, v.Name, v.Vendor)
		}
		v.State = VarStateAdded
		enc, _ := v.MarshalBinary()
		if off+len(enc) > s.storeOff+s.size {
			return nil, fmt.Errorf("%s: variable store full: %s needs 0x%x bytes at 0x%x, store ends at 0x%x", input, v.Name, len(enc), off, s.storeOff+s.size)
		}
		copy(out[off:], enc)
		off = int(alignUp64(uint64(off+len(enc)), varHeaderAlignment))
	}
	return out, nil
}

// SecureBootVars are the variable payloads (EFI_SIGNATURE_LISTs) enrolled
// in a VARS store.
type SecureBootVars struct {
	PK, KEK, DB []byte
}

// EnrollSecureBoot returns the VARS template with PK, KEK and db written
// as time-based authenticated, non-volatile variables stamped with epoch.
// edk2's AuthVariableLib enters User Mode with Secure Boot enabled when it
// finds PK at the next boot.
func EnrollSecureBoot(input string, template []byte, v SecureBootVars, epoch int64) ([]byte, error) {
	ts := EFITime(time.Unix(epoch, 0))
	mk := func(name string, vendor ovmf.GUID, data []byte) AuthVariable {
		return AuthVariable{Name: name, Vendor: vendor, Attributes: secureBootVarAttrs, TimeStamp: ts, Data: data}
	}
	return AppendVars(input, template, []AuthVariable{
		mk("db", EFIImageSecurityDatabaseGUID, v.DB),
		mk("KEK", EFIGlobalVariableGUID, v.KEK),
		mk("PK", EFIGlobalVariableGUID, v.PK),
	})
}
