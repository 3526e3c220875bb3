package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// The TDX CC event log (CCEL).
//
// References:
//   - UEFI Specification 2.10, section 38.4 "Confidential Computing
//     Measurement": EFI_CC_MEASUREMENT_PROTOCOL, CC MR index 0 = MRTD,
//     1..4 = RTMR[0..3]; the event log is the TCG crypto-agile format with
//     the MR index in the PCRIndex field.
//   - ACPI Specification 6.5, section 5.2.34 "Confidential Computing Event
//     Log Table (CCEL)": the table that points at the log area.
//   - Intel TDX Virtual Firmware Design Guide, section 4.3: SHA-384 only.
//
// The log itself is parsed with ParseEventLog (the same format as a TPM
// log); this file adds the CC-specific checks, the RTMR replay and the ACPI
// table.

// CC measurement register indices (UEFI 2.10, section 38.4.1).
const (
	CCMRIndexMRTD  = 0
	CCMRIndexRTMR0 = 1
	NumRTMRs       = 4
)

// RTMRSize is the size of an RTMR (SHA-384).
const RTMRSize = 48

// ParseCCEL decodes a CC event log (for example the contents of
// /sys/firmware/acpi/tables/data/CCEL; trailing 0xff padding of the log area
// is accepted, and so is the Spec ID header in MR index 1 as edk2 writes
// it). Beyond ParseEventLog's checks it requires a SHA-384 bank and
// an MR index of 1..4 (RTMR0..3) on every measured event. input names the
// log in errors.
func ParseCCEL(input string, b []byte) (*EventLog, error) {
	if len(b) >= 8 && binary.LittleEndian.Uint32(b) == ccelSpecIDMRIndex && EventType(binary.LittleEndian.Uint32(b[4:])) == EvNoAction {
		// edk2 logs the Spec ID header with PCRIndex 1 ("PCRIndex 0 maps
		// to MrIndex 1"); the TCG format wants 0 there.
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b, 0)
	}
	l, err := ParseEventLog(input, b)
	if err != nil {
		return nil, err
	}
	if l.SpecID.digestSize(AlgSHA384) != RTMRSize {
		return nil, &ovmf.FormatError{Input: input, Offset: SizeofPCClientPCREventHeader + sizeofSpecIDFixed,
			Field: "event 0: TCG_EfiSpecIDEvent.digestSizes", Reason: fmt.Sprintf("no sha384 bank (banks: %s); a CC event log carries SHA-384 digests", algList(l.Algs()))}
	}
	for i, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		if e.PCR < CCMRIndexRTMR0 || e.PCR >= CCMRIndexRTMR0+NumRTMRs {
			return nil, fmt.Errorf("%s: event %d (%s): MR index %d, want 1..4 (RTMR0..3)", input, i+1, e.Type, e.PCR)
		}
	}
	return l, nil
}

// ccelSpecIDMRIndex is the PCRIndex edk2 gives the Spec ID header record
// of a CC event log (OvmfPkg/Tcg/TdTcg2Dxe/TdTcg2Dxe.c SetupCcEventLog).
const ccelSpecIDMRIndex = 1

// MarshalCCEL encodes l as edk2 writes a CC event log: the crypto-agile
// format with the Spec ID header record in MR index 1.
func MarshalCCEL(l *EventLog) ([]byte, error) {
	b, err := l.MarshalBinary()
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(b, ccelSpecIDMRIndex)
	return b, nil
}

func (s *SpecIDEvent) digestSize(a HashAlg) int {
	for _, x := range s.Algorithms {
		if x.Alg == a {
			return int(x.Size)
		}
	}
	return 0
}

// RTMRIndex returns the RTMR an event of a CC event log extends (its MR
// index minus one), or -1 for MRTD or an invalid index.
func RTMRIndex(mrIndex uint32) int {
	if mrIndex < CCMRIndexRTMR0 || mrIndex >= CCMRIndexRTMR0+NumRTMRs {
		return -1
	}
	return int(mrIndex - CCMRIndexRTMR0)
}

// ReplayRTMRs extends the SHA-384 digests of every measured event of a CC
// event log into four zeroed RTMRs (TDG.MR.RTMR.EXTEND: RTMR = SHA-384(RTMR
// || digest), TDX Module spec, "Runtime Measurement Extension").
func ReplayRTMRs(l *EventLog) ([NumRTMRs][RTMRSize]byte, error) {
	var r [NumRTMRs][RTMRSize]byte
	for i, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		idx := RTMRIndex(e.PCR)
		if idx < 0 {
			return r, fmt.Errorf("replaying CC event log: event %d (%s): MR index %d is not an RTMR", i+1, e.Type, e.PCR)
		}
		d := e.Digest(AlgSHA384)
		if len(d) != RTMRSize {
			return r, fmt.Errorf("replaying CC event log: event %d (%s): no sha384 digest", i+1, e.Type)
		}
		r[idx] = [RTMRSize]byte(Extend(AlgSHA384, r[idx][:], d))
	}
	return r, nil
}

// CCEL ACPI table layout (ACPI 6.5, section 5.2.34, table 5.170).
const (
	SizeofCCELTable       = 56
	sizeofACPIHeader      = 36
	ccelCCTypeOff         = 36
	ccelCCSubtypeOff      = 37
	ccelReservedOff       = 38
	ccelLAMLOff           = 40
	ccelLASAOff           = 48
	acpiLengthOff         = 4
	acpiRevisionOff       = 8
	acpiChecksumOff       = 9
	CCELCCTypeTDX    byte = 2 // CC Type: 1 = SEV, 2 = TDX
)

// CCELTable is the ACPI CCEL table (as in /sys/firmware/acpi/tables/CCEL).
type CCELTable struct {
	Header    [sizeofACPIHeader]byte // standard ACPI header, verbatim
	CCType    byte
	CCSubtype byte
	LAML      uint64 // log area minimum length
	LASA      uint64 // log area start address
}

// ErrBadChecksum means an ACPI table's bytes do not sum to zero.
var ErrBadChecksum = errors.New("ACPI checksum mismatch")

// ParseCCELTable decodes the ACPI CCEL table b, checking the signature,
// length, checksum and reserved bytes. input names the table in errors.
func ParseCCELTable(input string, b []byte) (*CCELTable, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(off), Field: "CCEL." + field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) != SizeofCCELTable {
		return nil, fail(0, "Length", "table is 0x%x bytes, want 0x%x", len(b), SizeofCCELTable)
	}
	if !bytes.Equal(b[:4], []byte("CCEL")) {
		return nil, fail(0, "Signature", "%q, want \"CCEL\"", b[:4])
	}
	if l := binary.LittleEndian.Uint32(b[acpiLengthOff:]); l != SizeofCCELTable {
		return nil, fail(acpiLengthOff, "Length", "0x%x, want 0x%x", l, SizeofCCELTable)
	}
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		return nil, &ovmf.FormatError{Input: input, Offset: acpiChecksumOff, Field: "CCEL.Checksum", Reason: fmt.Sprintf("bytes sum to 0x%02x, want 0", sum), Err: ErrBadChecksum}
	}
	if r := b[ccelReservedOff : ccelReservedOff+2]; r[0] != 0 || r[1] != 0 {
		return nil, fail(ccelReservedOff, "Reserved", "% x, want zero", r)
	}
	t := &CCELTable{
		Header: [sizeofACPIHeader]byte(b[:sizeofACPIHeader]), CCType: b[ccelCCTypeOff], CCSubtype: b[ccelCCSubtypeOff],
		LAML: binary.LittleEndian.Uint64(b[ccelLAMLOff:]), LASA: binary.LittleEndian.Uint64(b[ccelLASAOff:]),
	}
	if t.CCType != CCELCCTypeTDX {
		return nil, fail(ccelCCTypeOff, "CCType", "%d, want %d (TDX)", t.CCType, CCELCCTypeTDX)
	}
	return t, nil
}

// MarshalBinary encodes t with a fresh length and checksum.
func (t *CCELTable) MarshalBinary() ([]byte, error) {
	b := make([]byte, SizeofCCELTable)
	copy(b, t.Header[:])
	copy(b, "CCEL")
	binary.LittleEndian.PutUint32(b[acpiLengthOff:], SizeofCCELTable)
	b[acpiChecksumOff] = 0
	b[ccelCCTypeOff], b[ccelCCSubtypeOff] = t.CCType, t.CCSubtype
	binary.LittleEndian.PutUint64(b[ccelLAMLOff:], t.LAML)
	binary.LittleEndian.PutUint64(b[ccelLASAOff:], t.LASA)
	var sum byte
	for _, c := range b {
		sum += c
	}
	b[acpiChecksumOff] = -sum
	return b, nil
}
