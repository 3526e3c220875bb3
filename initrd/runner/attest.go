package runner

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mkcvm/mkcvm/measure"
)

// Nonce size limits of GET /evidence.
const (
	minNonce = 8
	maxNonce = 64
)

// Attester keeps the workload event log, extends every TEE with each event
// and answers evidence requests.
type Attester struct {
	tees   []TEE
	key    *ecdh.PrivateKey
	pubDER []byte

	mu     sync.Mutex
	events []measure.WorkloadEvent
}

// NewAttester returns an attester over tees with the boot key.
func NewAttester(tees []TEE, key *ecdh.PrivateKey) (*Attester, error) {
	der, err := x509.MarshalPKIXPublicKey(key.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("encoding the boot public key: %w", err)
	}
	return &Attester{tees: tees, key: key, pubDER: der}, nil
}

// Record extends every TEE with e, then appends e to the log. Any failure is
// fatal for the boot: the runner must not run a workload it could not
// measure.
func (a *Attester) Record(e measure.WorkloadEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tees {
		if err := t.Extend(e); err != nil {
			return fmt.Errorf("%s: recording %s: %w", t.Name(), e.Type, err)
		}
	}
	a.events = append(a.events, e)
	return nil
}

// Events returns a copy of the workload log.
func (a *Attester) Events() []measure.WorkloadEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]measure.WorkloadEvent(nil), a.events...)
}

// Evidence collects fresh evidence from every TEE bound to nonce.
func (a *Attester) Evidence(ctx context.Context, nonce []byte) (*EvidenceResponse, error) {
	events := a.Events()
	log := measure.MarshalWorkloadLog(events)
	b := measure.WorkloadBinding{Nonce: nonce, LogDigest: sha256.Sum256(log), PublicKey: a.pubDER}
	r := &EvidenceResponse{Nonce: nonce, PublicKey: a.pubDER, WorkloadLog: log, LogSHA256: hex.EncodeToString(b.LogDigest[:])}
	for _, e := range events {
		r.WorkloadEvents = append(r.WorkloadEvents, ReadableEvent{Type: e.Type.String(), Value: e.String()})
	}
	for _, t := range a.tees {
		ev, err := t.Report(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("%s evidence: %w", t.Name(), err)
		}
		r.Evidence = append(r.Evidence, ev)
	}
	return r, nil
}

// Handler serves GET /evidence?nonce=<hex>, 8 to 64 bytes.
func (a *Attester) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /evidence", func(w http.ResponseWriter, r *http.Request) {
		nonce, err := hex.DecodeString(r.URL.Query().Get("nonce"))
		if err != nil || len(nonce) < minNonce || len(nonce) > maxNonce {
			http.Error(w, fmt.Sprintf("nonce: want %d to %d bytes in hex", minNonce, maxNonce), http.StatusBadRequest)
			return
		}
		resp, err := a.Evidence(r.Context(), nonce)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		enc.Encode(resp)
	})
	return mux
}

// Serve answers evidence requests on a unix socket at path until ctx ends.
func (a *Attester) Serve(ctx context.Context, path string) (stop func(), err error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("attestation endpoint: %w", err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	// Serve returns when stopped; per-connection errors reach the workload
	// as failed requests.
	go srv.Serve(l)
	return func() { srv.Close() }, nil
}
