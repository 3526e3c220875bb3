package builder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf"
)

// The VARS store is decoded by measure.ParseVarStoreLayout (the decoder the
// PCR 1/7 predictor uses); this file only encodes and appends
// AUTHENTICATED_VARIABLE_HEADER records (edk2 MdeModulePkg/Include/Guid/
// VariableFormat.h at edk2-stable202211, the edk2 release Debian's ovmf
// 2022.11 is built from).
const (
	varStoreHealthy      = 0xfe
	varStartID           = 0x55aa
	sizeofAuthVarHeader  = 60
	varHeaderAlignment   = 4
	VarStateAdded        = measure.VarAdded // VAR_ADDED with the header-valid bit cleared
	efiTimeSize          = 16
	varAttrNV            = 0x01
	varAttrBS            = 0x02
	varAttrRT            = 0x04
	varAttrTimeBasedAuth = 0x20
	secureBootVarAttrs   = varAttrNV | varAttrBS | varAttrRT | varAttrTimeBasedAuth
)

// GUIDs of the variable store and of the Secure Boot variables.
var (
	// gEfiSystemNvDataFvGuid: the FV holding the NV variable store.
	systemNvDataFvGUID = ovmf.MustParseGUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
	// EFIGlobalVariableGUID owns PK, KEK and SecureBoot (UEFI 2.10 §3.3).
	EFIGlobalVariableGUID = measure.EFIGlobalVariable
	// EFIImageSecurityDatabaseGUID owns db and dbx (UEFI 2.10 §32.6.1).
	EFIImageSecurityDatabaseGUID = measure.EFIImageSecurityDatabase
)

// ErrVarExists means the template already holds an active Secure Boot
// variable that enrolment would shadow.
var ErrVarExists = errors.New("variable already present")

// AuthVariable is one AUTHENTICATED_VARIABLE_HEADER plus name and data, as
// AppendVars writes it.
type AuthVariable struct {
	State          uint8
	Attributes     uint32
	MonotonicCount uint64
	TimeStamp      [efiTimeSize]byte // EFI_TIME
	PubKeyIndex    uint32
	Name           string
	Vendor         ovmf.GUID
	Data           []byte
}

// writableVarStore decodes the store of fd with measure.ParseVarStoreLayout
// and checks what writing into it needs beyond what measurement does: an NV
// data FV, an authenticated, healthy store, and erased free space.
func writableVarStore(input string, fd []byte) (*measure.VarStoreLayout, error) {
	l, err := measure.ParseVarStoreLayout(input, fd)
	if err != nil {
		return nil, err
	}
	switch {
	case l.FileSystemGUID != systemNvDataFvGUID:
		return nil, &ovmf.FormatError{Input: input, Offset: 16, Field: "EFI_FIRMWARE_VOLUME_HEADER.FileSystemGuid", Reason: fmt.Sprintf("%s, want %s (NV data FV)", l.FileSystemGUID, systemNvDataFvGUID)}
	case !l.Authenticated:
		return nil, &ovmf.FormatError{Input: input, Offset: int64(l.HeaderOffset), Field: "VARIABLE_STORE_HEADER.Signature", Reason: "gEfiVariableGuid, want gEfiAuthenticatedVariableGuid"}
	case l.State != varStoreHealthy:
		return nil, &ovmf.FormatError{Input: input, Offset: int64(l.HeaderOffset + 21), Field: "VARIABLE_STORE_HEADER.State", Reason: fmt.Sprintf("0x%02x, want 0xfe (healthy)", l.State)}
	}
	for i := l.End; i < l.HeaderOffset+l.Size; i++ {
		if fd[i] != 0xff {
			return nil, &ovmf.FormatError{Input: input, Offset: int64(i), Field: "variable store free space", Reason: fmt.Sprintf("byte 0x%02x, want erased 0xff", fd[i])}
		}
	}
	return l, nil
}

// activeVar returns the live (VAR_ADDED) record name/vendor of l, if any.
func activeVar(l *measure.VarStoreLayout, name string, vendor ovmf.GUID) (measure.VarRecord, bool) {
	for _, r := range l.Records {
		if r.Name == name && r.Vendor == vendor && r.State == VarStateAdded {
			return r, true
		}
	}
	return measure.VarRecord{}, false
}

func alignUp(v, a int) int { return (v + a - 1) &^ (a - 1) }

// UCS2Name encodes a variable name as NUL-terminated UTF-16LE.
func UCS2Name(name string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(name)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
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
	s, err := writableVarStore(input, fd)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(fd)
	off, limit := s.End, s.HeaderOffset+s.Size
	for _, v := range vars {
		if old, ok := activeVar(s, v.Name, v.Vendor); ok {
			return nil, fmt.Errorf("%s: offset 0x%x: %w: %s (%s)", input, old.Offset, ErrVarExists, v.Name, v.Vendor)
		}
		v.State = VarStateAdded
		enc, _ := v.MarshalBinary()
		if off+len(enc) > limit {
			return nil, fmt.Errorf("%s: variable store full: %s needs 0x%x bytes at 0x%x, store ends at 0x%x", input, v.Name, len(enc), off, limit)
		}
		copy(out[off:], enc)
		off = alignUp(off+len(enc), varHeaderAlignment)
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
