package runner

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/mkcvm/mkcvm/measure"
)

// TEE is one source of evidence: a register bank the runner extends with
// workload events, and a report that binds data chosen by the runner.
type TEE interface {
	// Name is the evidence kind: tpm, snp, tdx or software.
	Name() string
	// Extend records one workload event (a no-op for sources without a
	// runtime register, such as an SEV-SNP report).
	Extend(e measure.WorkloadEvent) error
	// Report returns fresh evidence binding b.
	Report(ctx context.Context, b measure.WorkloadBinding) (*Evidence, error)
}

// SoftwareBank is a TEE in memory: PCR measure.WorkloadPCR in SHA-256 and
// SHA-384 and RTMR measure.WorkloadRTMR. It proves nothing; it backs tests
// and mkcvm.tee=none, where the served evidence still carries the log.
type SoftwareBank struct {
	PCR256 [32]byte
	PCR384 [48]byte
	RTMR   [48]byte
}

// Name implements TEE.
func (*SoftwareBank) Name() string { return "software" }

// Extend implements TEE.
func (s *SoftwareBank) Extend(e measure.WorkloadEvent) error {
	d := e.Digest(crypto.SHA256)
	s.PCR256 = sha256.Sum256(append(s.PCR256[:], d...))
	d = e.Digest(crypto.SHA384)
	s.PCR384 = sha512.Sum384(append(s.PCR384[:], d...))
	s.RTMR = sha512.Sum384(append(s.RTMR[:], d...))
	return nil
}

// Report implements TEE.
func (s *SoftwareBank) Report(_ context.Context, b measure.WorkloadBinding) (*Evidence, error) {
	rd := b.ReportData()
	return &Evidence{Kind: s.Name(), ReportData: rd[:], Registers: []PCRValue{
		{Bank: "sha256", Index: measure.WorkloadPCR, Value: s.PCR256[:]},
		{Bank: "sha384", Index: measure.WorkloadPCR, Value: s.PCR384[:]},
		{Bank: "rtmr", Index: measure.WorkloadRTMR, Value: s.RTMR[:]},
	}}, nil
}

// ErrNoTEE is returned when the configuration asks for a TEE the guest
// does not have.
var ErrNoTEE = errors.New("TEE not available")

// OpenTEEs opens the evidence sources the configuration names: "auto" opens
// every one present (TPM, SEV-SNP, TDX) and falls back to a software bank
// only if none is; a named one must be present.
func OpenTEEs(spec string, probe Probe) ([]TEE, error) {
	var out []TEE
	var errs []error
	for _, name := range splitList(spec) {
		if name == "none" {
			out = append(out, &SoftwareBank{})
			continue
		}
		for _, k := range []string{"tpm", "snp", "tdx"} {
			if name != "auto" && name != k {
				continue
			}
			t, err := probe(k)
			switch {
			case err == nil:
				out = append(out, t)
			case name == "auto" && errors.Is(err, ErrNoTEE):
			default:
				errs = append(errs, fmt.Errorf("opening %s: %w", k, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: mkcvm.tee=%s found no TPM, SEV-SNP or TDX device (set mkcvm.tee=none to run without evidence)", ErrNoTEE, spec)
	}
	return out, nil
}

// Probe opens the TEE of one kind, or returns an error wrapping ErrNoTEE
// when the device is absent.
type Probe func(kind string) (TEE, error)

func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
