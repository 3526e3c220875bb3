package runner

import (
	"context"
	"fmt"

	sevclient "github.com/google/go-sev-guest/client"

	"github.com/mkcvm/mkcvm/measure"
)

// SNP is an AMD SEV-SNP evidence source: attestation reports from the
// configfs-tsm report interface or /dev/sev-guest (go-sev-guest chooses).
// SEV-SNP has no runtime measurement register of its own; workload events
// are bound through REPORT_DATA (the log digest) and, with an SVSM vTPM,
// extended by the TPM source.
type SNP struct {
	qp sevclient.QuoteProvider
}

// NewSNP returns an SNP source over a quote provider.
func NewSNP(qp sevclient.QuoteProvider) *SNP { return &SNP{qp: qp} }

// OpenSNP opens the guest's SEV-SNP report interface, or returns ErrNoTEE.
func OpenSNP() (*SNP, error) {
	qp, err := sevclient.GetQuoteProvider()
	if err != nil || !qp.IsSupported() {
		return nil, fmt.Errorf("%w: no SEV-SNP report interface (configfs-tsm or /dev/sev-guest)", ErrNoTEE)
	}
	return NewSNP(qp), nil
}

// Name implements TEE.
func (*SNP) Name() string { return "snp" }

// Extend implements TEE (no register: see SNP).
func (*SNP) Extend(measure.WorkloadEvent) error { return nil }

// Report implements TEE: an attestation report with REPORT_DATA set to the
// binding's ReportData, followed by the certificate table.
func (s *SNP) Report(_ context.Context, b measure.WorkloadBinding) (*Evidence, error) {
	rd := b.ReportData()
	raw, err := s.qp.GetRawQuote(rd)
	if err != nil {
		return nil, fmt.Errorf("getting SEV-SNP report: %w", err)
	}
	return &Evidence{Kind: s.Name(), Report: raw, ReportData: rd[:]}, nil
}
