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

// TPMQuote is one TPM2_Quote result.
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
	for i, q := range ev.Quotes {
		pcrs, err := verifyQuote(q, opts)
		if err != nil {
			fail(fmt.Sprintf("quote %d (%s)", i, q.Bank), err.Error())
			continue
		}
		r.add(Check{Evidence: "tpm", What: "quote " + q.Bank, OK: true, Detail: "signature, nonce and pcrDigest verified"})
		if opts.Nonce == nil {
			r.add(Check{Evidence: "tpm", What: "quote " + q.Bank + " nonce", OK: true, Detail: "not checked (no nonce given)"})
		}
		quoted[q.Bank] = pcrs
	}
	log, err := measure.ParseEventLog("event log", ev.EventLog)
	if err != nil {
		fail("event log", err.Error())
	} else {
		for _, bank := range slices.Sorted(maps.Keys(quoted)) {
			alg, _ := measure.ParseHashAlg(bank)
			if err := log.VerifyReplay(alg, quoted[bank]); err != nil {
				fail("event log replay "+bank, err.Error())
				continue
			}
			r.add(Check{Evidence: "tpm", What: "event log replay " + bank, OK: true, Detail: "log replays to the quoted PCRs"})
		}
	}
	comparePCRs(r, shape.TPM, quoted)
	if log != nil {
		compareEvents(r, shape.TPM, log)
	}
	return r
}

// verifyQuote checks one quote and returns its PCR values by index.
func verifyQuote(q TPMQuote, opts TPMOptions) (map[uint32][]byte, error) {
	alg, err := measure.ParseHashAlg(q.Bank)
	if err != nil {
		return nil, err
	}
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
	pcrs := map[uint32][]byte{}
	for k, v := range q.PCRs {
		n, err := strconv.ParseUint(k, 10, 32)
		if err != nil || n > 23 {
			return nil, fmt.Errorf("%w: PCR index %q", ErrEvidence, k)
		}
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != alg.Size() {
			return nil, fmt.Errorf("%w: PCR%d: not a %s value", ErrEvidence, n, q.Bank)
		}
		pcrs[uint32(n)] = b
	}
	var concat []byte
	selected := 0
	for _, sel := range info.PCRSelect.PCRSelections {
		if measure.HashAlg(sel.Hash) != alg {
			return nil, fmt.Errorf("%w: quote selects bank %s, evidence says %s", ErrEvidence, measure.HashAlg(sel.Hash), q.Bank)
		}
		for i := range len(sel.PCRSelect) * 8 {
			if sel.PCRSelect[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			v, ok := pcrs[uint32(i)]
			if !ok {
				return nil, fmt.Errorf("%w: PCR%d is quoted but its value is missing", ErrEvidence, i)
			}
			concat = append(concat, v...)
			selected++
		}
	}
	if selected != len(pcrs) {
		return nil, fmt.Errorf("%w: %d PCR values given, quote selects %d", ErrEvidence, len(pcrs), selected)
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
	return pcrs, nil
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

// comparePCRs requires every pinned PCR to be quoted and equal in at
// least one of the manifest's banks; every quoted bank the manifest pins
// is compared. A bank the evidence does not quote is reported as covered
// by the other bank (both banks extend the same events), unless no bank
// of that PCR is quoted, which fails.
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
		var covered []string
		var unquoted []Check
		for _, bank := range banks {
			want, pinned := tv.PCRs[bank][key]
			if !pinned {
				continue
			}
			c := Check{Evidence: "tpm", What: fmt.Sprintf("PCR%d %s", idx, bank), Want: want}
			got, ok := quoted[bank][uint32(idx)]
			if !ok {
				unquoted = append(unquoted, c)
				continue
			}
			c.Got = hex.EncodeToString(got)
			c.OK = c.Got == want
			c.Detail = detailIf(!c.OK, "value differs")
			if c.OK {
				covered = append(covered, bank)
			}
			r.add(c)
		}
		for _, c := range unquoted {
			if len(covered) > 0 {
				c.OK, c.Want = true, ""
				c.Detail = fmt.Sprintf("not quoted; PCR%d verified in %s", idx, joinStrings(covered))
			} else {
				c.Detail = fmt.Sprintf("pinned (%s) but not verified in any quoted bank", basis)
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
