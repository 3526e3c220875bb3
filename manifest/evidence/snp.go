package evidence

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/mkcvm/mkcvm/manifest"
)

// SNPOptions are the trust inputs of an SNP report verification.
type SNPOptions struct {
	// Now is the time certificates are checked at (from cmd/).
	Now time.Time
	// TrustedRoots overrides go-sev-guest's embedded AMD ARK/ASK roots,
	// keyed by product line ("Milan", "Genoa"). Nil uses the embedded roots.
	TrustedRoots map[string][]*trust.AMDRootCerts
	// Getter fetches missing certificates from AMD KDS; nil means offline:
	// the evidence must carry the VCEK in its certificate table.
	Getter trust.HTTPSGetter
	// Product forces the product for v2 reports that do not carry it.
	Product *spb.SevProduct
	// ReportData, if set, must equal REPORT_DATA (zero-padded to 64).
	ReportData []byte
}

// VerifySNP checks an SNP attestation: evidence is the 1184-byte report,
// optionally followed by the extended-report certificate table (as
// SNP_GET_EXT_REPORT or configfs-tsm outblob+auxblob give it). The
// signature chain to the AMD root is checked by go-sev-guest; then the
// measurement, guest policy and report data are compared with shape.
func VerifySNP(evidence []byte, shape *manifest.Shape, opts SNPOptions) *Report {
	r := &Report{}
	fail := func(what, detail string) { r.add(Check{Evidence: "snp", What: what, Detail: detail}) }
	if shape.SNP == nil {
		fail("shape "+shape.Name, "manifest has no SNP values for this shape")
		return r
	}
	if opts.Now.IsZero() {
		fail("signature chain", "no verification time given")
		return r
	}
	if len(evidence) < abi.ReportSize {
		fail("report", fmt.Sprintf("%d bytes, an attestation report is %d (0x%x)", len(evidence), abi.ReportSize, abi.ReportSize))
		return r
	}
	var att *spb.Attestation
	var err error
	if len(evidence) == abi.ReportSize {
		var rep *spb.Report
		if rep, err = abi.ReportToProto(evidence); err == nil {
			att = &spb.Attestation{Report: rep, CertificateChain: &spb.CertificateChain{}}
		}
	} else {
		att, err = abi.ReportCertsToProto(evidence)
	}
	if err != nil {
		fail("report", err.Error())
		return r
	}
	vopts := &verify.Options{Now: opts.Now, TrustedRoots: opts.TrustedRoots, Product: opts.Product,
		Getter: opts.Getter, DisableCertFetching: opts.Getter == nil}
	if err := verify.SnpAttestation(att, vopts); err != nil {
		fail("signature chain", err.Error())
		return r
	}
	r.add(Check{Evidence: "snp", What: "signature chain", OK: true, Detail: "report signed by a VCEK/VLEK chaining to the AMD root"})
	rep := att.Report
	want := shape.SNP.LaunchDigest
	got := hex.EncodeToString(rep.Measurement)
	r.add(Check{Evidence: "snp", What: "MEASUREMENT", Want: want, Got: got, OK: want == got, Detail: detailIf(want != got, "launch digest differs")})
	if shape.Policy != "" {
		p, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(shape.Policy), "0x"), 16, 64)
		if err != nil {
			fail("POLICY", fmt.Sprintf("manifest policy %q: %v", shape.Policy, err))
		} else {
			w, g := fmt.Sprintf("0x%x", p), fmt.Sprintf("0x%x", rep.Policy)
			r.add(Check{Evidence: "snp", What: "POLICY", Want: w, Got: g, OK: p == rep.Policy, Detail: detailIf(p != rep.Policy, "guest policy differs")})
		}
	} else {
		fail("POLICY", "the manifest pins no guest policy for this shape")
	}
	if opts.ReportData != nil {
		w := make([]byte, 64)
		copy(w, opts.ReportData)
		ok := hex.EncodeToString(w) == hex.EncodeToString(rep.ReportData)
		r.add(Check{Evidence: "snp", What: "REPORT_DATA", Want: hex.EncodeToString(w), Got: hex.EncodeToString(rep.ReportData), OK: ok, Detail: detailIf(!ok, "not the expected nonce")})
	}
	return r
}

func detailIf(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
