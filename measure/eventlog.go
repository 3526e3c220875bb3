package measure

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // registers crypto.SHA1 for SHA-1 banks of real logs
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/mkcvm/mkcvm/ovmf"
)

// The TCG crypto-agile event log.
//
// References:
//   - TCG PC Client Platform Firmware Profile Specification (PFP), Family
//     "2.0", Level 00, Version 1.05 Revision 23, section 10 (event logging):
//     10.2.1 TCG_PCClientPCREvent (the SHA-1 header record), 10.2.2
//     TCG_PCR_EVENT2, 10.4.5.1 TCG_EfiSpecIDEvent, 10.4.1 event types.
//   - TCG TPM 2.0 Library Part 2, section 6.3 (TPM_ALG_ID).
//
// A log is one TCG_PCClientPCREvent carrying the Spec ID event, followed by
// TCG_PCR_EVENT2 records. Events are numbered as tpm2_eventlog numbers them:
// the Spec ID header is event 0 and EventLog.Events[i] is event i+1. The same
// format carries the TDX CC event log (CCEL), where PCRIndex holds the MR
// index (Intel TDX Virtual Firmware Design Guide, section 4.3.4).

// HashAlg is a TPM_ALG_ID naming a digest bank (TPM 2.0 Library Part 2,
// section 6.3).
type HashAlg uint16

// Hash algorithms that appear in event logs.
const (
	AlgSHA1   HashAlg = 0x0004
	AlgSHA256 HashAlg = 0x000b
	AlgSHA384 HashAlg = 0x000c
	AlgSHA512 HashAlg = 0x000d
)

var hashAlgs = []struct {
	alg  HashAlg
	name string
	h    crypto.Hash
}{
	{AlgSHA1, "sha1", crypto.SHA1},
	{AlgSHA256, "sha256", crypto.SHA256},
	{AlgSHA384, "sha384", crypto.SHA384},
	{AlgSHA512, "sha512", crypto.SHA512},
}

// ParseHashAlg maps a bank name ("sha1", "sha256", "sha384", "sha512") to
// its TPM_ALG_ID.
func ParseHashAlg(name string) (HashAlg, error) {
	for _, a := range hashAlgs {
		if a.name == strings.ToLower(name) {
			return a.alg, nil
		}
	}
	return 0, fmt.Errorf("unknown hash algorithm %q (want sha1, sha256, sha384 or sha512)", name)
}

// String returns the bank name, e.g. "sha256".
func (a HashAlg) String() string {
	for _, x := range hashAlgs {
		if x.alg == a {
			return x.name
		}
	}
	return fmt.Sprintf("alg(0x%04x)", uint16(a))
}

// Hash returns the Go hash of a, or 0 when a is unknown.
func (a HashAlg) Hash() crypto.Hash {
	for _, x := range hashAlgs {
		if x.alg == a {
			return x.h
		}
	}
	return 0
}

// Size returns the digest size of a in bytes, or 0 when a is unknown.
func (a HashAlg) Size() int {
	if h := a.Hash(); h != 0 {
		return h.Size()
	}
	return 0
}

// Sum hashes b with a. a must be a known algorithm.
func (a HashAlg) Sum(b []byte) []byte {
	h := a.Hash().New()
	h.Write(b)
	return h.Sum(nil)
}

// Digest is one TPMT_HA: a digest in one bank.
type Digest struct {
	Alg   HashAlg
	Value []byte
}

// Event is one TCG_PCR_EVENT2 record (PFP section 10.2.2).
type Event struct {
	PCR     uint32 // PCRIndex (the MR index in a CCEL)
	Type    EventType
	Digests []Digest // in the order of the Spec ID event's algorithms
	Data    []byte   // the event field
}

// Digest returns the event's digest in bank a, or nil.
func (e *Event) Digest(a HashAlg) []byte {
	for _, d := range e.Digests {
		if d.Alg == a {
			return d.Value
		}
	}
	return nil
}

// AlgorithmSize is one entry of TCG_EfiSpecIDEvent.digestSizes.
type AlgorithmSize struct {
	Alg  HashAlg
	Size uint16
}

// SpecIDEvent is TCG_EfiSpecIDEvent (PFP section 10.4.5.1), the event data of
// the log's first record.
type SpecIDEvent struct {
	PlatformClass    uint32
	SpecVersionMinor uint8
	SpecVersionMajor uint8
	SpecErrata       uint8
	UintnSize        uint8 // 1 for 32-bit UINTN, 2 for 64-bit
	Algorithms       []AlgorithmSize
	VendorInfo       []byte
}

// EventLog is a crypto-agile event log: the Spec ID header and the events.
type EventLog struct {
	SpecID SpecIDEvent
	Events []Event
}

// Algs lists the banks the log carries, in Spec ID order.
func (l *EventLog) Algs() []HashAlg {
	var out []HashAlg
	for _, a := range l.SpecID.Algorithms {
		out = append(out, a.Alg)
	}
	return out
}

// NewSpecID returns the Spec ID event EDK2 writes for a crypto-agile log with
// the given banks: platform class 0 (client), spec version 2.0 errata 0,
// UINTN size 2 (64-bit), no vendor info.
func NewSpecID(algs ...HashAlg) SpecIDEvent {
	s := SpecIDEvent{SpecVersionMajor: 2, UintnSize: 2}
	for _, a := range algs {
		s.Algorithms = append(s.Algorithms, AlgorithmSize{a, uint16(a.Size())})
	}
	return s
}

// NewEvent returns an event whose digest in every bank of algs is the hash
// of measured (the bytes the firmware hashed), carrying data as its event
// field. measured and data are often the same bytes.
func NewEvent(pcr uint32, typ EventType, data, measured []byte, algs []HashAlg) Event {
	e := Event{PCR: pcr, Type: typ, Data: bytes.Clone(data)}
	for _, a := range algs {
		e.Digests = append(e.Digests, Digest{a, a.Sum(measured)})
	}
	return e
}

// Sizes and fixed values of the log format (PFP sections 10.2.1, 10.2.2,
// 10.4.5.1).
const (
	// SizeofPCClientPCREventHeader is PCRIndex + EventType + SHA-1 digest +
	// EventSize of TCG_PCClientPCREvent.
	SizeofPCClientPCREventHeader = 4 + 4 + 20 + 4
	// sizeofSpecIDFixed is signature[16] .. numberOfAlgorithms.
	sizeofSpecIDFixed = 16 + 4 + 1 + 1 + 1 + 1 + 4
	// maxEventDataSize bounds one event's data; real events are far
	// smaller, and the bound keeps a corrupt size from allocating.
	maxEventDataSize = 16 << 20
	// maxDigestCount bounds TPML_DIGEST_VALUES.count (TPM 2.0 Part 2,
	// HASH_COUNT is the number of implemented algorithms).
	maxDigestCount = 16
)

// SpecIDSignature is TCG_EfiSpecIDEvent.signature of a crypto-agile log.
var SpecIDSignature = [16]byte{'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0}

// MarshalBinary encodes the log: the Spec ID header record followed by one
// TCG_PCR_EVENT2 per event. Every event must carry exactly the Spec ID's
// banks, in order.
func (l *EventLog) MarshalBinary() ([]byte, error) {
	var b []byte
	spec := l.SpecID.marshal()
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(EvNoAction))
	b = append(b, make([]byte, 20)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	for i, e := range l.Events {
		if len(e.Digests) != len(l.SpecID.Algorithms) {
			return nil, fmt.Errorf("event %d: %d digests, Spec ID event lists %d banks", i+1, len(e.Digests), len(l.SpecID.Algorithms))
		}
		b = binary.LittleEndian.AppendUint32(b, e.PCR)
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Digests)))
		for j, d := range e.Digests {
			want := l.SpecID.Algorithms[j]
			if d.Alg != want.Alg || len(d.Value) != int(want.Size) {
				return nil, fmt.Errorf("event %d: digest %d is %s/%d bytes, Spec ID event wants %s/%d", i+1, j, d.Alg, len(d.Value), want.Alg, want.Size)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(d.Alg))
			b = append(b, d.Value...)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b, nil
}

func (s *SpecIDEvent) marshal() []byte {
	b := append([]byte(nil), SpecIDSignature[:]...)
	b = binary.LittleEndian.AppendUint32(b, s.PlatformClass)
	b = append(b, s.SpecVersionMinor, s.SpecVersionMajor, s.SpecErrata, s.UintnSize)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Algorithms)))
	for _, a := range s.Algorithms {
		b = binary.LittleEndian.AppendUint16(b, uint16(a.Alg))
		b = binary.LittleEndian.AppendUint16(b, a.Size)
	}
	b = append(b, uint8(len(s.VendorInfo)))
	return append(b, s.VendorInfo...)
}

// logReader walks a log with bounds checks; every failure is a
// *ovmf.FormatError naming the event index, field and offset.
type logReader struct {
	input string
	b     []byte
	off   int
	event int
}

func (r *logReader) fail(field, format string, args ...any) error {
	return &ovmf.FormatError{Input: r.input, Offset: int64(r.off),
		Field: fmt.Sprintf("event %d: %s", r.event, field), Reason: fmt.Sprintf(format, args...)}
}

func (r *logReader) take(n int, field string) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, r.fail(field, "truncated: need %d bytes, %d left", n, len(r.b)-r.off)
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, nil
}

func (r *logReader) u32(field string) (uint32, error) {
	v, err := r.take(4, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(v), nil
}

func (r *logReader) u16(field string) (uint16, error) {
	v, err := r.take(2, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(v), nil
}

// ParseEventLog decodes a crypto-agile TCG event log (as read from
// /sys/kernel/security/tpm0/binary_bios_measurements, or a CCEL). input
// names the log in errors. Trailing 0xff or 0x00 padding after the last
// event (firmware log areas are often pre-filled) is accepted; anything
// else that does not decode is an error naming the event index.
func ParseEventLog(input string, b []byte) (*EventLog, error) {
	r := &logReader{input: input, b: b}
	l := &EventLog{}
	if err := r.header(&l.SpecID); err != nil {
		return nil, err
	}
	for r.off < len(b) {
		if allPadding(b[r.off:]) {
			break
		}
		r.event = len(l.Events) + 1
		e, err := r.event2(&l.SpecID)
		if err != nil {
			return nil, err
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

func allPadding(b []byte) bool {
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0xff }) ||
		!slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

func (r *logReader) header(s *SpecIDEvent) error {
	pcr, err := r.u32("PCRIndex")
	if err != nil {
		return err
	}
	if pcr != 0 {
		r.off -= 4
		return r.fail("PCRIndex", "Spec ID event in PCR %d, want 0", pcr)
	}
	typ, err := r.u32("EventType")
	if err != nil {
		return err
	}
	if EventType(typ) != EvNoAction {
		r.off -= 4
		return r.fail("EventType", "0x%x, want EV_NO_ACTION (a crypto-agile log starts with the Spec ID event)", typ)
	}
	d, err := r.take(20, "Digest")
	if err != nil {
		return err
	}
	if slices.ContainsFunc(d, func(c byte) bool { return c != 0 }) {
		r.off -= 20
		return r.fail("Digest", "Spec ID event digest not zero")
	}
	n, err := r.u32("EventSize")
	if err != nil {
		return err
	}
	data, err := r.take(int(min(n, maxEventDataSize+1)), "Event")
	if err != nil {
		return err
	}
	return parseSpecID(r.input, int64(r.off-len(data)), data, s)
}

func parseSpecID(input string, base int64, b []byte, s *SpecIDEvent) error {
	r := &logReader{input: input, b: b}
	fail := func(err error) error {
		if fe, ok := err.(*ovmf.FormatError); ok {
			fe.Offset += base
			fe.Field = strings.Replace(fe.Field, "event 0: ", "event 0: TCG_EfiSpecIDEvent.", 1)
		}
		return err
	}
	sig, err := r.take(16, "signature")
	if err != nil {
		return fail(err)
	}
	if !bytes.Equal(sig, SpecIDSignature[:]) {
		r.off -= 16
		return fail(r.fail("signature", "%q, want %q (not a crypto-agile log)", bytes.TrimRight(sig, "\x00"), "Spec ID Event03"))
	}
	fixed, err := r.take(8, "platformClass")
	if err != nil {
		return fail(err)
	}
	s.PlatformClass = binary.LittleEndian.Uint32(fixed)
	s.SpecVersionMinor, s.SpecVersionMajor, s.SpecErrata, s.UintnSize = fixed[4], fixed[5], fixed[6], fixed[7]
	n, err := r.u32("numberOfAlgorithms")
	if err != nil {
		return fail(err)
	}
	if n == 0 || n > maxDigestCount {
		r.off -= 4
		return fail(r.fail("numberOfAlgorithms", "%d, want 1..%d", n, maxDigestCount))
	}
	s.Algorithms = nil
	for i := range int(n) {
		id, err := r.u16(fmt.Sprintf("digestSizes[%d].algorithmId", i))
		if err != nil {
			return fail(err)
		}
		size, err := r.u16(fmt.Sprintf("digestSizes[%d].digestSize", i))
		if err != nil {
			return fail(err)
		}
		if a := HashAlg(id); a.Size() != 0 && a.Size() != int(size) {
			r.off -= 2
			return fail(r.fail(fmt.Sprintf("digestSizes[%d].digestSize", i), "%d for %s, want %d", size, a, a.Size()))
		}
		if size == 0 || size > 64 {
			r.off -= 2
			return fail(r.fail(fmt.Sprintf("digestSizes[%d].digestSize", i), "%d, want 1..64", size))
		}
		s.Algorithms = append(s.Algorithms, AlgorithmSize{HashAlg(id), size})
	}
	vn, err := r.take(1, "vendorInfoSize")
	if err != nil {
		return fail(err)
	}
	vi, err := r.take(int(vn[0]), "vendorInfo")
	if err != nil {
		return fail(err)
	}
	s.VendorInfo = nil
	if len(vi) > 0 {
		s.VendorInfo = bytes.Clone(vi)
	}
	if r.off != len(b) {
		return fail(r.fail("EventSize", "%d trailing bytes after vendorInfo", len(b)-r.off))
	}
	return nil
}

func (r *logReader) event2(s *SpecIDEvent) (Event, error) {
	var e Event
	var err error
	if e.PCR, err = r.u32("PCRIndex"); err != nil {
		return e, err
	}
	typ, err := r.u32("EventType")
	if err != nil {
		return e, err
	}
	e.Type = EventType(typ)
	if !e.Type.Known() {
		r.off -= 4
		return e, r.fail("EventType", "unknown event type 0x%08x", typ)
	}
	count, err := r.u32("Digests.count")
	if err != nil {
		return e, err
	}
	if int(count) != len(s.Algorithms) {
		r.off -= 4
		return e, r.fail("Digests.count", "%d, Spec ID event lists %d banks", count, len(s.Algorithms))
	}
	for i, want := range s.Algorithms {
		id, err := r.u16(fmt.Sprintf("Digests[%d].hashAlg", i))
		if err != nil {
			return e, err
		}
		if HashAlg(id) != want.Alg {
			r.off -= 2
			return e, r.fail(fmt.Sprintf("Digests[%d].hashAlg", i), "0x%04x, Spec ID event lists %s here", id, want.Alg)
		}
		v, err := r.take(int(want.Size), fmt.Sprintf("Digests[%d].digest", i))
		if err != nil {
			return e, err
		}
		e.Digests = append(e.Digests, Digest{want.Alg, bytes.Clone(v)})
	}
	n, err := r.u32("EventSize")
	if err != nil {
		return e, err
	}
	if n > maxEventDataSize {
		r.off -= 4
		return e, r.fail("EventSize", "%d bytes, more than the %d-byte limit", n, maxEventDataSize)
	}
	data, err := r.take(int(n), "Event")
	if err != nil {
		return e, err
	}
	if len(data) > 0 {
		e.Data = bytes.Clone(data)
	}
	return e, nil
}
