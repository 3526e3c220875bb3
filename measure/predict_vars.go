package measure

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"

	"github.com/mkcvm/mkcvm/ovmf"
)

// UEFI variable stores (OVMF VARS templates).
//
// The VARS image is a firmware volume (PI Specification Volume 3, section
// 3.2.1) whose body is an edk2 variable store: VARIABLE_STORE_HEADER followed
// by VARIABLE_HEADER or AUTHENTICATED_VARIABLE_HEADER records
// (edk2-stable202211 MdeModulePkg/Include/Guid/VariableFormat.h).

// Variable store constants (VariableFormat.h).
const (
	sizeofVariableStoreHeader = 28
	sizeofAuthVarHeader       = 60
	sizeofVarHeader           = 32
	varStartID                = 0x55aa
	varAdded                  = 0x3f
	varInDeletedTransition    = 0xfe // state bit cleared while a variable is being replaced
	varStoreFormatted         = 0x5a
)

var (
	authenticatedVariableGUID = ovmf.MustParseGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	variableGUID              = ovmf.MustParseGUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")
	// EFIGlobalVariable is EFI_GLOBAL_VARIABLE (UEFI 2.10 section 3.3).
	EFIGlobalVariable = ovmf.MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// EFIImageSecurityDatabase is EFI_IMAGE_SECURITY_DATABASE_GUID (UEFI
	// 2.10 section 32.6.1), the vendor of db and dbx.
	EFIImageSecurityDatabase = ovmf.MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
)

// UEFIVariable is one variable of a store.
type UEFIVariable struct {
	Vendor     ovmf.GUID
	Name       string
	Attributes uint32
	Data       []byte
}

// ParseVarStore returns the live variables of an OVMF VARS image, in store
// order. input names the image in errors.
func ParseVarStore(input string, vars []byte) ([]UEFIVariable, error) {
	l, err := ParseVarStoreLayout(input, vars)
	if err != nil {
		return nil, err
	}
	var out []UEFIVariable
	for _, r := range l.Records {
		if r.Live() {
			out = append(out, r.UEFIVariable)
		}
	}
	return out, nil
}

// fvFileSystemGUIDOffset is EFI_FIRMWARE_VOLUME_HEADER.FileSystemGuid.
const fvFileSystemGUIDOffset = 16

// VarStoreLayout is the variable store of an OVMF VARS image as laid out in
// the image: where the store and each record sit, so a writer can append
// variables in place.
type VarStoreLayout struct {
	FileSystemGUID ovmf.GUID // EFI_FIRMWARE_VOLUME_HEADER.FileSystemGuid
	HeaderOffset   int       // image offset of VARIABLE_STORE_HEADER
	Size           int       // VARIABLE_STORE_HEADER.Size (from HeaderOffset)
	Format, State  byte      // VARIABLE_STORE_HEADER.Format and State
	// Authenticated is true for a gEfiAuthenticatedVariableGuid store
	// (AUTHENTICATED_VARIABLE_HEADER records), false for gEfiVariableGuid.
	Authenticated bool
	// End is the image offset just past the last record, rounded up to
	// the 4-byte header alignment and capped at HeaderOffset+Size: where
	// the next variable goes.
	End     int
	Records []VarRecord // every record, live or deleted, in store order
}

// VarRecord is one VARIABLE_HEADER or AUTHENTICATED_VARIABLE_HEADER record
// with its name and data.
type VarRecord struct {
	UEFIVariable
	Offset         int   // image offset of the header
	State          uint8 // VARIABLE_HEADER.State
	MonotonicCount uint64
	TimeStamp      [16]byte // EFI_TIME
	PubKeyIndex    uint32   // authenticated stores only, like the two above
}

// VarAdded is the State of a live variable: VAR_ADDED with the
// header-valid bit cleared (VariableFormat.h).
const VarAdded = varAdded

// Live reports whether r is a live variable: VAR_ADDED, possibly while in
// deleted transition (a replacement being written).
func (r VarRecord) Live() bool {
	return r.State == varAdded || r.State == varAdded&varInDeletedTransition
}

// ParseVarStoreLayout decodes the variable store of an OVMF VARS image
// (firmware volume header, VARIABLE_STORE_HEADER and every record). It
// checks no more than ParseVarStore: callers that write into the store
// check FileSystemGUID, State and the free space themselves. input names
// the image in errors.
func ParseVarStoreLayout(input string, vars []byte) (*VarStoreLayout, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(vars) < fvHeaderLengthOffset+2 || string(vars[fvSignatureOffset:fvSignatureOffset+4]) != "_FVH" {
		return nil, fail(fvSignatureOffset, "EFI_FIRMWARE_VOLUME_HEADER.Signature", "not a firmware volume (want \"_FVH\")")
	}
	l := &VarStoreLayout{FileSystemGUID: ovmf.GUID(vars[fvFileSystemGUIDOffset : fvFileSystemGUIDOffset+16])}
	st := int(binary.LittleEndian.Uint16(vars[fvHeaderLengthOffset:]))
	if st+sizeofVariableStoreHeader > len(vars) {
		return nil, fail(fvHeaderLengthOffset, "EFI_FIRMWARE_VOLUME_HEADER.HeaderLength", "0x%x leaves no room for a variable store", st)
	}
	l.HeaderOffset = st
	var hdrSize int
	switch ovmf.GUID(vars[st : st+16]) {
	case authenticatedVariableGUID:
		hdrSize, l.Authenticated = sizeofAuthVarHeader, true
	case variableGUID:
		hdrSize = sizeofVarHeader
	default:
		return nil, fail(st, "VARIABLE_STORE_HEADER.Signature", "%s is not a variable store GUID", ovmf.GUID(vars[st:st+16]))
	}
	size := int(binary.LittleEndian.Uint32(vars[st+16:]))
	if size < sizeofVariableStoreHeader || size > len(vars)-st {
		return nil, fail(st+16, "VARIABLE_STORE_HEADER.Size", "0x%x outside the %d-byte image", size, len(vars))
	}
	l.Size, l.Format, l.State = size, vars[st+20], vars[st+21]
	if vars[st+20] != varStoreFormatted {
		return nil, fail(st+20, "VARIABLE_STORE_HEADER.Format", "0x%02x, want 0x5a", vars[st+20])
	}
	end := st + size
	le := binary.LittleEndian
	off := st + sizeofVariableStoreHeader
	for off+hdrSize <= end {
		if le.Uint16(vars[off:]) != varStartID {
			break
		}
		nameSize, dataSize := le.Uint32(vars[off+hdrSize-24:]), le.Uint32(vars[off+hdrSize-20:])
		nameOff := off + hdrSize
		if uint64(nameSize)+uint64(dataSize) > uint64(end-nameOff) || nameSize%2 != 0 {
			return nil, fail(off+hdrSize-24, "VARIABLE_HEADER.NameSize", "name 0x%x + data 0x%x bytes run past the store", nameSize, dataSize)
		}
		dataOff := nameOff + int(nameSize)
		r := VarRecord{
			UEFIVariable: UEFIVariable{
				Vendor:     ovmf.GUID(vars[off+hdrSize-16 : off+hdrSize]),
				Name:       ucs2Decode(vars[nameOff:dataOff]),
				Attributes: le.Uint32(vars[off+4:]),
				Data:       append([]byte(nil), vars[dataOff:dataOff+int(dataSize)]...),
			},
			Offset: off,
			State:  vars[off+2],
		}
		if l.Authenticated {
			r.MonotonicCount = le.Uint64(vars[off+8:])
			copy(r.TimeStamp[:], vars[off+16:off+32])
			r.PubKeyIndex = le.Uint32(vars[off+32:])
		}
		l.Records = append(l.Records, r)
		off = (dataOff + int(dataSize) + 3) &^ 3
	}
	l.End = min(off, end)
	return l, nil
}

// lookupVar returns the data of a live variable, or nil when absent.
func lookupVar(vs []UEFIVariable, vendor ovmf.GUID, name string) ([]byte, bool) {
	for _, v := range vs {
		if v.Vendor == vendor && v.Name == name {
			return v.Data, true
		}
	}
	return nil, false
}

// ucs2 encodes s as UCS-2 little endian, without a terminator.
func ucs2(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

// ucs2Decode decodes UCS-2 little endian up to the first NUL.
func ucs2Decode(b []byte) string {
	var u []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// UEFIVariableData encodes UEFI_VARIABLE_DATA (PFP section 10.4.4.1, the
// event data of EV_EFI_VARIABLE_DRIVER_CONFIG and EV_EFI_VARIABLE_BOOT):
// VariableName GUID, UnicodeNameLength and VariableDataLength (UINT64), the
// name in UCS-2 without terminator, and the data.
func UEFIVariableData(vendor ovmf.GUID, name string, data []byte) []byte {
	n := ucs2(name)
	b := append([]byte(nil), vendor[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(n)/2))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	b = append(b, n...)
	return append(b, data...)
}
