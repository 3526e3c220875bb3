package measure

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"
)

// The workload measurement of the mkcvm runner (the initrd's init).
//
// Before anything of the workload runs, the runner records six events (image
// reference, manifest digest, config digest, args, env, separator) and
// extends each into WorkloadPCR (every active TPM bank) and, on Intel TDX,
// into RTMR WorkloadRTMR. The encoding follows the style of the TCG Canonical
// Event Log (CEL) Format Specification, version 1.0 rev 0.41, section 4
// (TLV records): every record is a sequence of type-length-value fields with
// a one-byte type and a four-byte big-endian length. The runner and the
// predictor (PredictWorkload) both encode through WorkloadEvent, so the value
// a verifier replays from the served log and the value predicted from a recipe
// come from the same bytes.

// WorkloadPCR is the TPM PCR the runner extends with workload events.
//
// PCR 15 because every other candidate has an owner on the boot paths mkcvm
// supports: PCRs 0-7 belong to the firmware (TCG PC Client Platform Firmware
// Profile, section 3.3.4), 8-9 and 14 to shim/GRUB and the Linux kernel's
// initrd/cmdline measurements, 10 to IMA, 11-13 to systemd-stub (UKI sections,
// kernel cmdline, sysext addons: the disk image path can boot a UKI), and 16
// and 23 are resettable from software (debug and application support), so a
// value there proves nothing. PCR 15 is only used by systemd userspace
// (machine-id, file systems), which the mkcvm initrd does not run. It starts
// at all zeroes after platform reset.
const WorkloadPCR = 15

// WorkloadRTMR is the TDX runtime measurement register the runner extends.
// RTMR3 is left to the guest OS by TDX virtual firmware (Intel TDX Virtual
// Firmware Design Guide, section 10.1: RTMR[0..2] firmware, boot loader and
// OS; RTMR[3] reserved). It starts at all zeroes.
const WorkloadRTMR = 3

// CEL TLV field types used in a workload event-log record (CEL spec
// section 4.3: recnum 0, pcr 1, digests 3; the content type is ours).
const (
	celRecnum  = 0
	celPCR     = 1
	celDigests = 3
	// CELContentMkcvm is the CEL content type of mkcvm workload events. It
	// is not registered with TCG; 0x6d ('m') avoids the assigned types
	// (4-9) and Google COS's 80.
	CELContentMkcvm = 0x6d
)

// TPM_ALG_ID values (TCG TPM 2.0 Library Part 2, section 6.3) naming the
// digest banks inside a record's digests field.
const (
	algSHA256 = 0x000b
	algSHA384 = 0x000c
)

// WorkloadEventType identifies one kind of workload event.
type WorkloadEventType uint8

// Workload event types, in the order the runner records them.
const (
	WorkloadImageRef       WorkloadEventType = 1 // "registry/repo@sha256:<hex>"
	WorkloadManifestDigest WorkloadEventType = 2 // "sha256:<hex>"
	WorkloadConfigDigest   WorkloadEventType = 3 // "sha256:<hex>"
	WorkloadArgs           WorkloadEventType = 4 // list of strings: args overriding the image's Cmd
	WorkloadEnv            WorkloadEventType = 5 // list of "KEY=VALUE" added to the image's Env
	WorkloadSeparator      WorkloadEventType = 6 // empty; nothing of the workload is measured after it
)

// listItem is the TLV type of one element inside an args or env event.
const listItem = 0

func (t WorkloadEventType) String() string {
	switch t {
	case WorkloadImageRef:
		return "image-ref"
	case WorkloadManifestDigest:
		return "manifest-digest"
	case WorkloadConfigDigest:
		return "config-digest"
	case WorkloadArgs:
		return "args"
	case WorkloadEnv:
		return "env"
	case WorkloadSeparator:
		return "separator"
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// WorkloadEvent is one workload event: a type and its value bytes.
type WorkloadEvent struct {
	Type  WorkloadEventType
	Value []byte
}

// WorkloadStringEvent returns an event whose value is s.
func WorkloadStringEvent(t WorkloadEventType, s string) WorkloadEvent {
	return WorkloadEvent{Type: t, Value: []byte(s)}
}

// WorkloadListEvent returns an event whose value is one TLV per item
// (type 0, big-endian uint32 length, bytes), so no separator character is
// reserved and the list boundaries are unambiguous.
func WorkloadListEvent(t WorkloadEventType, items []string) WorkloadEvent {
	var v []byte
	for _, s := range items {
		v = appendTLV(v, listItem, []byte(s))
	}
	return WorkloadEvent{Type: t, Value: v}
}

// Items decodes the value of an args or env event into its strings.
func (e WorkloadEvent) Items() ([]string, error) {
	var out []string
	b := e.Value
	for off := 0; off < len(b); {
		typ, val, n, err := readTLV(b[off:])
		if err != nil {
			return nil, fmt.Errorf("%s item at offset 0x%x: %w", e.Type, off, err)
		}
		if typ != listItem {
			return nil, fmt.Errorf("%s item at offset 0x%x: type %d, want %d", e.Type, off, typ, listItem)
		}
		out = append(out, string(val))
		off += n
	}
	return out, nil
}

// MarshalBinary returns the event's TLV encoding: type, big-endian uint32
// length, value. The event digest is a hash of exactly these bytes.
func (e WorkloadEvent) MarshalBinary() ([]byte, error) {
	return appendTLV(nil, byte(e.Type), e.Value), nil
}

func (e WorkloadEvent) encoded() []byte { b, _ := e.MarshalBinary(); return b }

// Digest returns the event digest under hash h (SHA-256 or SHA-384).
func (e WorkloadEvent) Digest(h crypto.Hash) []byte {
	hh := h.New()
	hh.Write(e.encoded())
	return hh.Sum(nil)
}

// String renders the event for humans (logs, manifests).
func (e WorkloadEvent) String() string {
	switch e.Type {
	case WorkloadArgs, WorkloadEnv:
		items, err := e.Items()
		if err != nil {
			return fmt.Sprintf("%s: %x", e.Type, e.Value)
		}
		return fmt.Sprintf("%s: %q", e.Type, items)
	case WorkloadSeparator:
		return e.Type.String()
	}
	return fmt.Sprintf("%s: %s", e.Type, e.Value)
}

// WorkloadRef is what the predictor needs to know about a workload: the
// image reference (by digest), the digest of its config blob, and the
// args/env the runner configuration adds.
type WorkloadRef struct {
	Image        string   // registry/repo@sha256:<hex>
	ConfigDigest string   // sha256:<hex> of the image config blob
	Args         []string // override of the image's Cmd; empty keeps it
	Env          []string // KEY=VALUE entries added to the image's Env
}

// ImageDigest returns the "sha256:<hex>" digest named by an image reference
// of the form registry/repo@sha256:<64 hex>, or an error naming the problem
// (a tag without digest is refused).
func ImageDigest(ref string) (string, error) {
	at := strings.LastIndexByte(ref, '@')
	if at < 0 {
		return "", fmt.Errorf("image reference %q: no digest (want registry/repo@sha256:<hex>; tags are refused)", ref)
	}
	d := ref[at+1:]
	if err := checkSHA256Digest(d); err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if at == 0 {
		return "", fmt.Errorf("image reference %q: empty repository", ref)
	}
	return d, nil
}

func checkSHA256Digest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
		}
	}
	return nil
}

// WorkloadEvents returns the six events, in order, that the runner records
// for w.
func WorkloadEvents(w WorkloadRef) ([]WorkloadEvent, error) {
	md, err := ImageDigest(w.Image)
	if err != nil {
		return nil, err
	}
	if err := checkSHA256Digest(w.ConfigDigest); err != nil {
		return nil, fmt.Errorf("workload config: %w", err)
	}
	return []WorkloadEvent{
		WorkloadStringEvent(WorkloadImageRef, w.Image),
		WorkloadStringEvent(WorkloadManifestDigest, md),
		WorkloadStringEvent(WorkloadConfigDigest, w.ConfigDigest),
		WorkloadListEvent(WorkloadArgs, w.Args),
		WorkloadListEvent(WorkloadEnv, w.Env),
		{Type: WorkloadSeparator},
	}, nil
}

// WorkloadValues are register values after replaying workload events on
// registers that start at zero.
type WorkloadValues struct {
	PCRSHA256 [32]byte // WorkloadPCR, sha256 bank
	PCRSHA384 [48]byte // WorkloadPCR, sha384 bank
	RTMR      [48]byte // RTMR WorkloadRTMR (SHA-384)
	// The runner extends every bank a TPM has (so no bank of WorkloadPCR
	// is left at its reset value for someone else to extend); these are
	// the sha1 and sha512 banks' values.
	PCRSHA1   [20]byte
	PCRSHA512 [64]byte
}

// ReplayWorkload extends zeroed registers with the events' digests
// (new = H(old || H(event))), TPM 2.0 Library Part 1 section 17.2 and the
// TDX module's TDG.MR.RTMR.EXTEND, which is the same SHA-384 extend.
func ReplayWorkload(events []WorkloadEvent) WorkloadValues {
	var v WorkloadValues
	for _, e := range events {
		d256 := sha256.Sum256(e.encoded())
		v.PCRSHA256 = sha256.Sum256(append(v.PCRSHA256[:], d256[:]...))
		d384 := sha512.Sum384(e.encoded())
		v.PCRSHA384 = sha512.Sum384(append(v.PCRSHA384[:], d384[:]...))
		d1 := sha1.Sum(e.encoded())
		v.PCRSHA1 = sha1.Sum(append(v.PCRSHA1[:], d1[:]...))
		d512 := sha512.Sum512(e.encoded())
		v.PCRSHA512 = sha512.Sum512(append(v.PCRSHA512[:], d512[:]...))
	}
	v.RTMR = v.PCRSHA384
	return v
}

// PredictWorkload computes the events and register values the runner will
// produce for w. It is pure: the same function the runner's log replays to.
func PredictWorkload(w WorkloadRef) ([]WorkloadEvent, WorkloadValues, error) {
	ev, err := WorkloadEvents(w)
	if err != nil {
		return nil, WorkloadValues{}, err
	}
	return ev, ReplayWorkload(ev), nil
}

// MarshalWorkloadLog encodes events as a CEL-style TLV event log. Each record
// is recnum (uint64), pcr (uint8), digests (sha256 and sha384 TLVs keyed by
// TPM_ALG_ID) and the content (type CELContentMkcvm holding the event TLV).
func MarshalWorkloadLog(events []WorkloadEvent) []byte {
	var out []byte
	for i, e := range events {
		out = appendTLV(out, celRecnum, binary.BigEndian.AppendUint64(nil, uint64(i)))
		out = appendTLV(out, celPCR, []byte{WorkloadPCR})
		var ds []byte
		ds = appendTLV(ds, algSHA256, e.Digest(crypto.SHA256))
		ds = appendTLV(ds, algSHA384, e.Digest(crypto.SHA384))
		out = appendDigestsTLV(out, ds)
		out = appendTLV(out, CELContentMkcvm, e.encoded())
	}
	return out
}

// appendDigestsTLV appends the digests field. Inside it each digest is a TLV
// whose one-byte type is the TPM_ALG_ID value (both ids fit in a byte, as in
// go-tpm-tools' CEL encoding).
func appendDigestsTLV(b, inner []byte) []byte { return appendTLV(b, celDigests, inner) }

// WorkloadLogError is a decoding error in a workload event log.
type WorkloadLogError struct {
	Input  string
	Offset int64
	Field  string
	Reason string
}

func (e *WorkloadLogError) Error() string {
	return fmt.Sprintf("%s: offset 0x%x: %s: %s", e.Input, e.Offset, e.Field, e.Reason)
}

var _ error = (*WorkloadLogError)(nil)

// ParseWorkloadLog decodes a log written by MarshalWorkloadLog and checks
// every record: consecutive recnums from 0, PCR WorkloadPCR, both digests
// present and equal to the digests of the content. input names the log in
// errors.
func ParseWorkloadLog(input string, b []byte) ([]WorkloadEvent, error) {
	var events []WorkloadEvent
	off := 0
	bad := func(field, format string, args ...any) error {
		return &WorkloadLogError{Input: input, Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	for rec := 0; off < len(b); rec++ {
		field := func(want byte, name string) ([]byte, error) {
			typ, val, n, err := readTLV(b[off:])
			if err != nil {
				return nil, bad(fmt.Sprintf("record[%d].%s", rec, name), "%v", err)
			}
			if typ != want {
				return nil, bad(fmt.Sprintf("record[%d].%s", rec, name), "type %d, want %d", typ, want)
			}
			off += n
			return val, nil
		}
		start := off
		rn, err := field(celRecnum, "recnum")
		if err != nil {
			return nil, err
		}
		if len(rn) != 8 || binary.BigEndian.Uint64(rn) != uint64(rec) {
			off = start
			return nil, bad(fmt.Sprintf("record[%d].recnum", rec), "got %x, want %d as uint64", rn, rec)
		}
		pcrOff := off
		pcr, err := field(celPCR, "pcr")
		if err != nil {
			return nil, err
		}
		if len(pcr) != 1 || pcr[0] != WorkloadPCR {
			off = pcrOff
			return nil, bad(fmt.Sprintf("record[%d].pcr", rec), "got %x, want %d", pcr, WorkloadPCR)
		}
		dOff := off
		ds, err := field(celDigests, "digests")
		if err != nil {
			return nil, err
		}
		cOff := off
		content, err := field(CELContentMkcvm, "content")
		if err != nil {
			return nil, err
		}
		typ, val, n, err := readTLV(content)
		if err != nil || n != len(content) {
			off = cOff
			return nil, bad(fmt.Sprintf("record[%d].content", rec), "not exactly one event TLV")
		}
		ev := WorkloadEvent{Type: WorkloadEventType(typ)}
		if len(val) > 0 {
			ev.Value = bytes.Clone(val)
		}
		if ev.Type < WorkloadImageRef || ev.Type > WorkloadSeparator {
			off = cOff
			return nil, bad(fmt.Sprintf("record[%d].content.type", rec), "unknown workload event type %d", typ)
		}
		if err := checkDigests(ds, ev); err != nil {
			off = dOff
			return nil, bad(fmt.Sprintf("record[%d].digests", rec), "%v", err)
		}
		events = append(events, ev)
	}
	return events, nil
}

func checkDigests(ds []byte, ev WorkloadEvent) error {
	want := [][2]any{{byte(algSHA256), ev.Digest(crypto.SHA256)}, {byte(algSHA384), ev.Digest(crypto.SHA384)}}
	off := 0
	for _, w := range want {
		typ, val, n, err := readTLV(ds[off:])
		if err != nil {
			return err
		}
		if typ != w[0].(byte) {
			return fmt.Errorf("digest alg 0x%04x, want 0x%04x", typ, w[0])
		}
		if !bytes.Equal(val, w[1].([]byte)) {
			return fmt.Errorf("alg 0x%04x digest %x does not match content digest %x", typ, val, w[1])
		}
		off += n
	}
	if off != len(ds) {
		return fmt.Errorf("%d trailing bytes", len(ds)-off)
	}
	return nil
}

// tlvHeader is the size of a TLV header: one type byte and a uint32 length.
const tlvHeader = 5

func appendTLV(b []byte, typ byte, val []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(val)))
	return append(b, val...)
}

// readTLV reads one TLV from the start of b and returns its size n.
func readTLV(b []byte) (typ byte, val []byte, n int, err error) {
	if len(b) < tlvHeader {
		return 0, nil, 0, fmt.Errorf("truncated TLV header: %d bytes, want %d", len(b), tlvHeader)
	}
	l := uint64(binary.BigEndian.Uint32(b[1:tlvHeader]))
	end := uint64(tlvHeader) + l
	if end > uint64(len(b)) {
		return 0, nil, 0, fmt.Errorf("TLV length %d exceeds the %d remaining bytes", l, len(b)-tlvHeader)
	}
	return b[0], b[tlvHeader:end], int(end), nil
}

// WorkloadBinding is what the runner binds into every piece of evidence:
// the verifier's nonce, the digest of the workload event log served with the
// evidence, and the public key the runner generated at boot (PKIX DER) so
// that secrets can be encrypted to this VM.
type WorkloadBinding struct {
	Nonce     []byte
	LogDigest [32]byte // SHA-256 of MarshalWorkloadLog output
	PublicKey []byte   // PKIX (SubjectPublicKeyInfo) DER
}

// bindingDomain separates mkcvm's binding from any other use of the hashes.
const bindingDomain = "mkcvm-runner/evidence-binding/v1\x00"

func (b WorkloadBinding) message() []byte {
	m := []byte(bindingDomain)
	m = binary.BigEndian.AppendUint32(m, uint32(len(b.Nonce)))
	m = append(m, b.Nonce...)
	m = append(m, b.LogDigest[:]...)
	pk := sha256.Sum256(b.PublicKey)
	return append(m, pk[:]...)
}

// ReportData is the 64-byte REPORT_DATA of an SEV-SNP report or a TDX quote:
// SHA-512 of the domain string, the nonce (length-prefixed), the log digest
// and SHA-256 of the public key.
func (b WorkloadBinding) ReportData() [64]byte { return sha512.Sum512(b.message()) }

// TPMNonce is the qualifying data of a TPM2_Quote: SHA-256 of the same
// message (a TPM2B_DATA is at most one digest of the TPM's largest bank,
// and every TPM has SHA-256).
func (b WorkloadBinding) TPMNonce() [32]byte { return sha256.Sum256(b.message()) }
