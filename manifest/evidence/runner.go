package evidence

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/go-tpm/tpm2"
	"github.com/mkcvm/mkcvm/initrd/runner/spec"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// KindRunner is the JSON answer of the in-guest runner's GET /evidence
// (spec.EvidenceResponse, the runner's own wire type): the workload log plus one piece of
// evidence per TEE, each bound to the nonce, the log digest and the
// runner's public key (measure.WorkloadBinding).
const KindRunner Kind = "runner"

func isRunnerResponse(b []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	_, ok1 := probe["workload_log"]
	_, ok2 := probe["evidence"]
	return ok1 && ok2
}

// verifyRunner checks the binding of a runner response, then each piece
// of evidence with the binding as its expected nonce / report data.
func verifyRunner(m *manifest.Manifest, it Item, opts Options) (*Report, error) {
	var resp spec.EvidenceResponse
	if err := json.Unmarshal(it.Data, &resp); err != nil {
		return nil, fmt.Errorf("%w: runner evidence: %w", ErrEvidence, err)
	}
	r := &Report{}
	logSum := sha256.Sum256(resp.WorkloadLog)
	if hex.EncodeToString(logSum[:]) != resp.LogSHA256 {
		r.add(Check{Evidence: "runner", What: "workload log", Detail: "log_sha256 is not the SHA-256 of workload_log"})
	}
	want := opts.TPM.Nonce // the verifier's nonce, if any
	if want != nil && !bytes.Equal(want, resp.Nonce) {
		r.add(Check{Evidence: "runner", What: "nonce", Want: hex.EncodeToString(want), Got: hex.EncodeToString(resp.Nonce), Detail: "not the verifier's nonce"})
	}
	if want == nil {
		r.add(Check{Evidence: "runner", What: "nonce", OK: true, Detail: "not checked (no nonce given)"})
	}
	b := measure.WorkloadBinding{Nonce: resp.Nonce, LogDigest: logSum, PublicKey: resp.PublicKey}
	rd, tn := b.ReportData(), b.TPMNonce()
	sub := opts
	sub.SNP.ReportData, sub.TDX.ReportData, sub.TPM.Nonce = rd[:], rd[:], tn[:]
	// The workload log accounts for the TPM's workload PCR: it is replayed
	// against the quote and compared with the manifest's workload events.
	events, err := measure.ParseWorkloadLog("workload_log", resp.WorkloadLog)
	if err != nil {
		r.add(Check{Evidence: "runner", What: "workload log", Detail: err.Error()})
	} else {
		sub.TPM.Workload = append([]measure.WorkloadEvent{}, events...)
	}
	if len(resp.Evidence) == 0 {
		r.add(Check{Evidence: "runner", What: "evidence", Detail: "the runner returned no TEE evidence"})
	}
	for i, ev := range resp.Evidence {
		name := fmt.Sprintf("%s evidence[%d] (%s)", it.Name, i, ev.Kind)
		var child Item
		switch ev.Kind {
		case "snp":
			child = Item{Name: name, Kind: KindSNP, Data: ev.Report}
		case "tdx":
			child = Item{Name: name, Kind: KindTDX, Data: ev.Report}
			sub.TDX.EventLog = ev.EventLog
		case "tpm":
			data, ak, err := runnerTPM(ev, sub.TPM.AK)
			if err != nil {
				r.add(Check{Evidence: "tpm", What: name, Detail: err.Error()})
				continue
			}
			child = Item{Name: name, Kind: KindTPM, Data: data}
			sub.TPM.AK = ak
		default:
			r.add(Check{Evidence: ev.Kind, What: name, Detail: "evidence kind proves nothing or is unknown"})
			continue
		}
		cr, err := verifyItem(m, child, sub)
		if cr != nil {
			r.Checks = append(r.Checks, cr.Checks...)
		}
		if err != nil && (cr == nil || cr.Err() == nil) {
			r.add(Check{Evidence: string(child.Kind), What: name, Detail: err.Error()})
		}
	}
	return r, r.Err()
}

// runnerTPM converts a runner TPM item to TPMEvidence JSON. The AK it
// carries must equal the trusted AK.
func runnerTPM(ev *spec.Evidence, trusted crypto.PublicKey) ([]byte, crypto.PublicKey, error) {
	if trusted == nil {
		return nil, nil, errors.New("no trusted attestation key given (--ak): the AK inside the evidence proves nothing by itself")
	}
	if len(ev.AKPublic) > 0 {
		pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
		if err != nil {
			return nil, nil, fmt.Errorf("ak_public: %w", err)
		}
		k, err := tpm2.Pub(*pub)
		if err != nil {
			return nil, nil, fmt.Errorf("ak_public: %w", err)
		}
		a, err1 := x509.MarshalPKIXPublicKey(k)
		b, err2 := x509.MarshalPKIXPublicKey(trusted)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return nil, nil, errors.New("the AK in the evidence is not the trusted AK")
		}
	}
	te := TPMEvidence{Kind: TPMKind, EventLog: ev.EventLog}
	byBank := map[string]*TPMQuote{}
	for _, p := range ev.PCRs {
		q, ok := byBank[p.Bank]
		if !ok {
			q = &TPMQuote{Bank: p.Bank, Quote: ev.Quote, Signature: ev.Signature, PCRs: map[string]string{}}
			byBank[p.Bank] = q
		}
		q.PCRs[strconv.Itoa(p.Index)] = hex.EncodeToString(p.Value)
	}
	for _, bank := range []string{"sha1", "sha256", "sha384", "sha512"} {
		if q, ok := byBank[bank]; ok {
			te.Quotes = append(te.Quotes, *q)
		}
	}
	b, err := json.Marshal(te)
	return b, trusted, err
}
