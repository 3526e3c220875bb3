package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"

	"github.com/google/go-tpm/tpm2"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// TPMKind is the "kind" of a TPM evidence file.
const TPMKind = "mkcvm.dev/evidence/tpm/v1"

// TPMEvidence is a TPM evidence file: one quote per PCR bank plus the
// TCG event log, as the guest read them. []byte fields are base64 in JSON.
type TPMEvidence struct {
	Kind     string     `json:"kind"`
	Quotes   []TPMQuote `json:"quotes"`
	EventLog []byte     `json:"event_log"`
}

// TPMQuote is one TPM2_Quote result, or one bank of it: a quote over
// several banks (one TPMS_PCR_SELECTION each) is given as one TPMQuote per
// bank carrying the same quote and signature bytes, each with that bank's
// PCRs; the verifier checks such entries together as one quote.
type TPMQuote struct {
	Bank      string `json:"bank"`      // sha1, sha256, sha384
	Quote     []byte `json:"quote"`     // TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12)
	Signature []byte `json:"signature"` // TPMT_SIGNATURE (Part 2, 11.3.4)
	// PCRs are the quoted PCR values, decimal index -> hex; the quote's
	// pcrDigest binds them.
	PCRs map[string]string `json:"pcrs"`
}

// ParseTPMEvidence decodes a TPM evidence file, rejecting unknown fields.
func ParseTPMEvidence(b []byte) (*TPMEvidence, error) {
	var ev TPMEvidence
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: TPM evidence: %w", ErrEvidence, err)
	}
	if ev.Kind != TPMKind {
		return nil, fmt.Errorf("%w: TPM evidence kind %q, want %q", ErrEvidence, ev.Kind, TPMKind)
	}
	return &ev, nil
}

// TPMOptions are the trust inputs of a TPM verification.
type TPMOptions struct {
	// AK is the attestation key's public key (ECDSA or RSA), trusted by
	// the caller (e.g. from the cloud's shielded-VM API or an EK cert).
	AK crypto.PublicKey
	// Nonce is the expected qualifying data; nil skips the freshness check
	// (the report says so).
	Nonce []byte
	// Workload, when non-nil, is the runner's workload log (runner
	// evidence): PCR measure.WorkloadPCR is replayed from these events
	// instead of the firmware event log, and they are compared with the
	// manifest's predicted workload events.
	Workload []measure.WorkloadEvent
}

// VerifyTPM checks TPM evidence against the TPM values of shape: each
// quote's signature with the AK, its nonce and pcrDigest; the event log's
// replay against the quoted PCRs; every PCR the manifest pins against the
// quoted value; and, per pinned PCR, the logged events against the
// manifest's predicted events (naming missing, extra or reordered events).
func VerifyTPM(ev *TPMEvidence, shape *manifest.Shape, opts TPMOptions) *Report {
	r := &Report{}
	fail := func(what, detail string) { r.add(Check{Evidence: "tpm", What: what, Detail: detail}) }
	if shape.TPM == nil {
		fail("shape "+shape.Name, "manifest has no TPM values for this shape")
		return r
	}
	quoted := map[string]map[uint32][]byte{}
	for i, g := range groupQuotes(ev.Quotes) {
		name := joinBanks(g)
		pcrs, err := verifyQuote(g, opts)
		if err != nil {
			fail(fmt.Sprintf("quote %d (%s)", i, name), err.Error())
			continue
		}
		r.add(Check{Evidence: "tpm", What: "quote " + name, OK: true, Detail: "signature, nonce and pcrDigest verified"})
		if opts.Nonce == nil {
			r.add(Check{Evidence: "tpm", What: "quote " + name + " nonce", OK: true, Detail: "not checked (no nonce given)"})
		}
		for bank, v := range pcrs {
			if _, dup := quoted[bank]; dup {
				fail("quote "+name, "bank "+bank+" is quoted more than once")
				continue
			}
			quoted[bank] = v
		}
	}
	log, err := measure.ParseEventLog("event log", ev.EventLog)
	if err != nil {
		fail("event log", err.Error())
	} else {
		for _, bank := range slices.Sorted(maps.Keys(quoted)) {
			alg, _ := measure.ParseHashAlg(bank)
			if !slices.Contains(log.Algs(), alg) {
				// The quote still binds this bank's values, which
				// comparePCRs checks against the manifest.
				r.add(Check{Evidence: "tpm", What: "event log replay " + bank, OK: true, Detail: "not replayed: the log has no " + bank + " digests"})
				continue
			}
			want, skipped := replayedPCRs(quoted[bank], shape.TPM, log, opts.Workload != nil)
			if err := log.VerifyReplay(alg, want); err != nil {
				fail("event log replay "+bank, err.Error())
				continue
			}
			detail := "log replays to the quoted PCRs"
			if len(skipped) > 0 {
				detail += fmt.Sprintf(" (PCRs %v neither pinned nor logged: not replayed)", skipped)
			}
			r.add(Check{Evidence: "tpm", What: "event log replay " + bank, OK: true, Detail: detail})
		}
	}
	if opts.Workload != nil {
		replayWorkload(r, opts.Workload, quoted)
		compareWorkload(r, shape.TPM, opts.Workload)
	}
	comparePCRs(r, shape.TPM, quoted)
	if log != nil {
		compareEvents(r, shape.TPM, log)
	}
	return r
}

// replayedPCRs returns the quoted PCRs the firmware event log must replay
// to: those it logs events for and those the manifest pins. A quoted PCR
// that is neither is left out (returned in skipped): software outside the
// firmware log extends it (PCR 10: the kernel's IMA, with its own log) and
// the manifest claims nothing about it. With workload (runner evidence) the
// workload log accounts for measure.WorkloadPCR instead.
func replayedPCRs(quoted map[uint32][]byte, tv *manifest.TPMValues, log *measure.EventLog, workload bool) (map[uint32][]byte, []uint32) {
	logged := map[uint32]bool{}
	for _, e := range log.Events {
		if e.Type != measure.EvNoAction {
			logged[e.PCR] = true
		}
	}
	pinned := func(pcr uint32) bool {
		key := strconv.Itoa(int(pcr))
		if tv.Basis[key] == "not-pinned" {
			return false
		}
		for _, vals := range tv.PCRs {
			if _, ok := vals[key]; ok {
				return true
			}
		}
		return false
	}
	want := map[uint32][]byte{}
	var skipped []uint32
	for _, pcr := range slices.Sorted(maps.Keys(quoted)) {
		switch {
		case workload && pcr == measure.WorkloadPCR:
		case logged[pcr] || pinned(pcr):
			want[pcr] = quoted[pcr]
		default:
			skipped = append(skipped, pcr)
		}
	}
	return want, skipped
}

// groupQuotes groups the entries that share quote and signature bytes (one
// multi-bank TPM2_Quote), in order of first appearance.
func groupQuotes(qs []TPMQuote) [][]TPMQuote {
	var out [][]TPMQuote
	for _, q := range qs {
		i := slices.IndexFunc(out, func(g []TPMQuote) bool {
			return bytes.Equal(g[0].Quote, q.Quote) && bytes.Equal(g[0].Signature, q.Signature)
		})
		if i < 0 {
			out = append(out, []TPMQuote{q})
		} else {
			out[i] = append(out[i], q)
		}
	}
	return out
}

func joinBanks(g []TPMQuote) string {
	var b []byte
	for i, q := range g {
		if i > 0 {
			b = append(b, '+')
		}
		b = append(b, q.Bank...)
	}
	return string(b)
}

// replayWorkload checks that the workload events replay (from zero) to
// the workload PCR in every quoted bank that has it.
func replayWorkload(r *Report, events []measure.WorkloadEvent, quoted map[string]map[uint32][]byte) {
	v := measure.ReplayWorkload(events)
	replayed := map[string][]byte{"sha1": v.PCRSHA1[:], "sha256": v.PCRSHA256[:], "sha384": v.PCRSHA384[:], "sha512": v.PCRSHA512[:]}
	for _, bank := range slices.Sorted(maps.Keys(quoted)) {
		got, ok := quoted[bank][measure.WorkloadPCR]
		if !ok || replayed[bank] == nil {
			continue
		}
		c := Check{Evidence: "tpm", What: "workload log replay " + bank, OK: bytes.Equal(got, replayed[bank])}
		if c.OK {
			c.Detail = fmt.Sprintf("%d workload events replay to the quoted PCR%d", len(events), measure.WorkloadPCR)
		} else {
			c.Detail = fmt.Sprintf("PCR%d (%s): replay of the %d workload events gives %x, the TPM has %x",
				measure.WorkloadPCR, bank, len(events), replayed[bank], got)
		}
		r.add(c)
	}
}

// compareWorkload compares the runner's workload events with the
// manifest's predicted ones (SHA-256 digests of the event TLVs), naming
// every missing, extra or out-of-order event.
func compareWorkload(r *Report, tv *manifest.TPMValues, events []measure.WorkloadEvent) {
	if len(tv.WorkloadLog) == 0 || tv.Basis[strconv.Itoa(measure.WorkloadPCR)] == "not-pinned" {
		return
	}
	got := make([]logged, len(events))
	for i, e := range events {
		got[i] = logged{index: i, typ: e.Type.String(), digest: hex.EncodeToString(e.Digest(crypto.SHA256))}
	}
	diffs := diffEvents(tv.WorkloadLog, got, "sha256")
	c := Check{Evidence: "tpm", What: fmt.Sprintf("PCR%d workload events (sha256)", measure.WorkloadPCR), OK: len(diffs) == 0}
	if c.OK {
		c.Detail = fmt.Sprintf("%d workload events as predicted", len(got))
	} else {
		c.Detail = joinStrings(diffs)
	}
	r.add(c)
}

// verifyQuote checks one quote (the entries of g share its bytes, one per
// quoted bank) and returns its PCR values by bank and index. Every bank
// the quote selects must have its values given, and every value given
// must be selected.
func verifyQuote(g []TPMQuote, opts TPMOptions) (map[string]map[uint32][]byte, error) {
	q := g[0]
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: TPMT_SIGNATURE: %w", ErrEvidence, err)
	}
	if err := verifyTPMSignature(opts.AK, q.Quote, sig); err != nil {
		return nil, err
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Quote)
	if err != nil {
		return nil, fmt.Errorf("%w: TPMS_ATTEST: %w", ErrEvidence, err)
	}
	if att.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("%w: TPMS_ATTEST.type 0x%x, want TPM_ST_ATTEST_QUOTE", ErrEvidence, uint16(att.Type))
	}
	if opts.Nonce != nil && !bytes.Equal(att.ExtraData.Buffer, opts.Nonce) {
		return nil, fmt.Errorf("%w: TPMS_ATTEST.extraData %x is not the nonce %x", ErrEvidence, att.ExtraData.Buffer, opts.Nonce)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("%w: TPMS_QUOTE_INFO: %w", ErrEvidence, err)
	}
	out := map[string]map[uint32][]byte{}
	for _, e := range g {
		alg, err := measure.ParseHashAlg(e.Bank)
		if err != nil {
			return nil, err
		}
		if _, dup := out[e.Bank]; dup {
			return nil, fmt.Errorf("%w: bank %s given twice for one quote", ErrEvidence, e.Bank)
		}
		pcrs := map[uint32][]byte{}
		for k, v := range e.PCRs {
			n, err := strconv.ParseUint(k, 10, 32)
			if err != nil || n > 23 {
				return nil, fmt.Errorf("%w: %s PCR index %q", ErrEvidence, e.Bank, k)
			}
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != alg.Size() {
				return nil, fmt.Errorf("%w: PCR%d: not a %s value", ErrEvidence, n, e.Bank)
			}
			pcrs[uint32(n)] = b
		}
		out[e.Bank] = pcrs
	}
	var concat []byte
	selected := map[string]int{}
	for _, sel := range info.PCRSelect.PCRSelections {
		bank := measure.HashAlg(sel.Hash).String()
		pcrs, ok := out[bank]
		if !ok {
			return nil, fmt.Errorf("%w: quote selects bank %s, evidence gives no %s values", ErrEvidence, bank, bank)
		}
		if _, dup := selected[bank]; dup {
			return nil, fmt.Errorf("%w: quote selects bank %s twice", ErrEvidence, bank)
		}
		selected[bank] = 0
		for i := range len(sel.PCRSelect) * 8 {
			if sel.PCRSelect[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			v, ok := pcrs[uint32(i)]
			if !ok {
				return nil, fmt.Errorf("%w: %s PCR%d is quoted but its value is missing", ErrEvidence, bank, i)
			}
			concat = append(concat, v...)
			selected[bank]++
		}
	}
	for _, bank := range slices.Sorted(maps.Keys(out)) {
		n, ok := selected[bank]
		if !ok {
			return nil, fmt.Errorf("%w: evidence gives %s values, the quote does not select bank %s", ErrEvidence, bank, bank)
		}
		if n != len(out[bank]) {
			return nil, fmt.Errorf("%w: %d %s PCR values given, quote selects %d", ErrEvidence, len(out[bank]), bank, n)
		}
	}
	h, err := sigHash(sig)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(concat)
	if !bytes.Equal(d.Sum(nil), info.PCRDigest.Buffer) {
		return nil, fmt.Errorf("%w: pcrDigest %x does not match the PCR values", ErrEvidence, info.PCRDigest.Buffer)
	}
	return out, nil
}

func sigHash(sig *tpm2.TPMTSignature) (crypto.Hash, error) {
	var alg tpm2.TPMIAlgHash
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, err
		}
		alg = e.Hash
	case tpm2.TPMAlgRSASSA:
		s, err := sig.Signature.RSASSA()
		if err != nil {
			return 0, err
		}
		alg = s.Hash
	default:
		return 0, fmt.Errorf("%w: signature scheme 0x%x not supported (ECDSA, RSASSA)", ErrEvidence, uint16(sig.SigAlg))
	}
	h := measure.HashAlg(alg).Hash()
	if h == 0 {
		return 0, fmt.Errorf("%w: signature hash 0x%x not supported", ErrEvidence, uint16(alg))
	}
	return h, nil
}

func verifyTPMSignature(ak crypto.PublicKey, msg []byte, sig *tpm2.TPMTSignature) error {
	h, err := sigHash(sig)
	if err != nil {
		return err
	}
	d := h.New()
	d.Write(msg)
	digest := d.Sum(nil)
	switch k := ak.(type) {
	case *ecdsa.PublicKey:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("%w: AK is ECDSA, signature is not", ErrEvidence)
		}
		rr, ss := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest, rr, ss) {
			return fmt.Errorf("%w: quote signature does not verify with the AK", ErrEvidence)
		}
	case *rsa.PublicKey:
		s, err := sig.Signature.RSASSA()
		if err != nil {
			return fmt.Errorf("%w: AK is RSA, signature is not RSASSA", ErrEvidence)
		}
		if err := rsa.VerifyPKCS1v15(k, h, digest, s.Sig.Buffer); err != nil {
			return fmt.Errorf("%w: quote signature does not verify with the AK: %w", ErrEvidence, err)
		}
	case nil:
		return fmt.Errorf("%w: no attestation key given", ErrEvidence)
	default:
		return fmt.Errorf("%w: AK type %T not supported", ErrEvidence, ak)
	}
	return nil
}

// comparePCRs requires every pinned PCR to be quoted and equal in every
// bank the manifest pins it in: a bank the manifest pins but the evidence
// does not quote fails, naming the bank (a digest bank left unquoted could
// hold anything, e.g. when a bank's events were not extended by software
// that only knows the other bank).
func comparePCRs(r *Report, tv *manifest.TPMValues, quoted map[string]map[uint32][]byte) {
	banks := slices.Sorted(maps.Keys(tv.PCRs))
	idxs := map[int]bool{}
	for _, bank := range banks {
		for _, idx := range sortedPCRs(tv.PCRs[bank]) {
			idxs[idx] = true
		}
	}
	for _, idx := range slices.Sorted(maps.Keys(idxs)) {
		key := strconv.Itoa(idx)
		basis := tv.Basis[key]
		if basis == "not-pinned" {
			continue
		}
		for _, bank := range banks {
			want, pinned := tv.PCRs[bank][key]
			if !pinned {
				continue
			}
			c := Check{Evidence: "tpm", What: fmt.Sprintf("PCR%d %s", idx, bank), Want: want}
			vals, bankQuoted := quoted[bank]
			got, ok := vals[uint32(idx)]
			switch {
			case !bankQuoted:
				c.Detail = fmt.Sprintf("bank %s is not quoted, but the manifest pins PCR%d in it (%s)", bank, idx, basis)
			case !ok:
				c.Detail = fmt.Sprintf("PCR%d is not in the quoted %s bank, but the manifest pins it (%s)", idx, bank, basis)
			default:
				c.Got = hex.EncodeToString(got)
				c.OK = c.Got == want
				c.Detail = detailIf(!c.OK, "value differs")
			}
			r.add(c)
		}
	}
}

func sortedPCRs(m map[string]string) []int {
	var out []int
	for k := range m {
		if n, err := strconv.Atoi(k); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// compareEvents compares, for each PCR with predicted events in the
// manifest, the logged events of that PCR with the predicted ones and
// names every missing, extra or out-of-order event.
func compareEvents(r *Report, tv *manifest.TPMValues, log *measure.EventLog) {
	if len(tv.EventLog) == 0 {
		return
	}
	bank := commonBank(tv, log)
	if bank == "" {
		r.add(Check{Evidence: "tpm", What: "event log", Detail: "no digest bank shared by the manifest's events and the log"})
		return
	}
	alg, _ := measure.ParseHashAlg(bank)
	byPCR := map[int][]manifest.Event{}
	for _, e := range tv.EventLog {
		byPCR[e.PCR] = append(byPCR[e.PCR], e)
	}
	// Every predicted PCR, with or without predicted events: an extra event
	// in a PCR the prediction leaves empty is named too. (A PCR pinned from
	// a captured profile without events is checked by value only.)
	pcrSet := map[int]bool{}
	for pcr := range byPCR {
		pcrSet[pcr] = true
	}
	for k, b := range tv.Basis {
		if n, err := strconv.Atoi(k); err == nil && b == "predicted" {
			pcrSet[n] = true
		}
	}
	for _, pcr := range slices.Sorted(maps.Keys(pcrSet)) {
		if tv.Basis[strconv.Itoa(pcr)] == "not-pinned" {
			continue
		}
		var got []logged
		for i, e := range log.Events {
			if int(e.PCR) == pcr && e.Type != measure.EvNoAction {
				got = append(got, logged{index: i + 1, typ: e.Type.String(), digest: hex.EncodeToString(e.Digest(alg))})
			}
		}
		diffs := diffEvents(byPCR[pcr], got, bank)
		c := Check{Evidence: "tpm", What: fmt.Sprintf("PCR%d events (%s)", pcr, bank), OK: len(diffs) == 0}
		if c.OK {
			c.Detail = fmt.Sprintf("%d events as predicted", len(got))
		} else {
			c.Detail = joinStrings(diffs)
		}
		r.add(c)
	}
}

type logged struct {
	index  int
	typ    string
	digest string
}

func commonBank(tv *manifest.TPMValues, log *measure.EventLog) string {
	for _, b := range []string{"sha256", "sha384", "sha512", "sha1"} {
		alg, _ := measure.ParseHashAlg(b)
		if !slices.Contains(log.Algs(), alg) {
			continue
		}
		if slices.ContainsFunc(tv.EventLog, func(e manifest.Event) bool { return e.Digests[b] != "" }) {
			return b
		}
	}
	return ""
}

// diffEvents aligns predicted and logged events of one PCR (longest common
// subsequence on type+digest) and describes each difference.
func diffEvents(want []manifest.Event, got []logged, bank string) []string {
	n, m := len(want), len(got)
	eq := func(i, j int) bool { return want[i].Type == got[j].typ && want[i].Digests[bank] == got[j].digest }
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if eq(i, j) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && eq(i, j):
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, fmt.Sprintf("extra event %d %s %s:%s not in the manifest", got[j].index, got[j].typ, bank, short(got[j].digest)))
			j++
		default:
			out = append(out, fmt.Sprintf("missing event (manifest #%d %s %q %s:%s)", want[i].Index, want[i].Type, want[i].Description, bank, short(want[i].Digests[bank])))
			i++
		}
	}
	return out
}

func joinStrings(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x)
	}
	return b.String()
}
