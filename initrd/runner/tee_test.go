package runner

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/google/go-configfs-tsm/configfs/fakertmr"
	cfsrtmr "github.com/google/go-configfs-tsm/rtmr"
	sevabi "github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"
	sevtestclient "github.com/google/go-sev-guest/testing/client"
	sevverify "github.com/google/go-sev-guest/verify"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtest "github.com/google/go-tdx-guest/testing"

	"github.com/mkcvm/mkcvm/measure"
)

var testRef = measure.WorkloadRef{
	Image:        "10.0.2.100/test/hello@sha256:" + strings.Repeat("12", 32),
	ConfigDigest: "sha256:" + strings.Repeat("34", 32),
	Args:         []string{"-v"},
	Env:          []string{"GREETING=hi"},
}

func testBinding(t *testing.T) measure.WorkloadBinding {
	ev, err := measure.WorkloadEvents(testRef)
	if err != nil {
		t.Fatal(err)
	}
	return measure.WorkloadBinding{Nonce: []byte("0123456789abcdef"), LogDigest: sha256.Sum256(measure.MarshalWorkloadLog(ev)), PublicKey: []byte("pk")}
}

// TestSNPTestDevice gets a report from go-sev-guest's test quote provider
// and verifies it with go-sev-guest's verifier against the test roots.
func TestSNPTestDevice(t *testing.T) {
	b := testBinding(t)
	rd := b.ReportData()
	tcs := []sevtest.TestCase{{Name: "mkcvm", Input: rd, Output: sevtest.TestRawReport(rd)}}
	qp, roots, _, kds := sevtestclient.GetSevQuoteProvider(tcs, &sevtest.DeviceOptions{Now: time.Now()}, t)
	ev, err := NewSNP(qp).Report(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	att, err := sevabi.ReportCertsToProto(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	if err := sevverify.SnpAttestation(att, &sevverify.Options{TrustedRoots: roots, Getter: kds, Now: time.Now()}); err != nil {
		t.Fatalf("verifying the report: %v", err)
	}
	if !bytes.Equal(att.GetReport().GetReportData(), rd[:]) {
		t.Errorf("REPORT_DATA = %x, want %x", att.GetReport().GetReportData(), rd)
	}
}

// TestTDX extends RTMR3 through go-configfs-tsm's fake configfs (which does
// its own SHA-384 extend) and reads a quote from go-tdx-guest's test
// provider.
func TestTDX(t *testing.T) {
	c := fakertmr.CreateRtmrSubsystem(t.TempDir())
	tcs := tdxtest.TestCases()
	qp, err := tdxtest.TcQuoteProvider(tcs)
	if err != nil {
		t.Fatal(err)
	}
	td := NewTDX(qp, func(d []byte) error { return ExtendRTMRClient(c, d) }, nil)
	events, want, err := measure.PredictWorkload(testRef)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := td.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cfsrtmr.GetDigest(c, measure.WorkloadRTMR)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Digest, want.RTMR[:]) {
		t.Errorf("RTMR%d = %x, replay %x", measure.WorkloadRTMR, got.Digest, want.RTMR)
	}
	// The test provider answers its canned REPORT_DATA with a captured real
	// quote (whose own REPORT_DATA differs): check that it comes through
	// whole and parses.
	ev, err := td.report(tcs[0].Input)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Report, tcs[0].Quote) || !bytes.Equal(ev.ReportData, tcs[0].Input[:]) {
		t.Error("TDX evidence does not carry the provider's quote and the requested REPORT_DATA")
	}
	q, err := tdxabi.QuoteToProto(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.(*tdxpb.QuoteV4); !ok {
		t.Fatalf("quote is %T", q)
	}
}

func TestOpenTEEs(t *testing.T) {
	none := func(k string) (TEE, error) { return nil, ErrNoTEE }
	onlyTPM := func(k string) (TEE, error) {
		if k == "tpm" {
			return &SoftwareBank{}, nil
		}
		return nil, ErrNoTEE
	}
	for _, tc := range []struct {
		name, spec string
		probe      Probe
		n          int
		err        bool
	}{
		{name: "auto finds nothing: refuse", spec: "auto", probe: none, err: true},
		{name: "auto finds tpm", spec: "auto", probe: onlyTPM, n: 1},
		{name: "named missing", spec: "snp", probe: onlyTPM, err: true},
		{name: "none", spec: "none", probe: none, n: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenTEEs(tc.spec, tc.probe)
			if (err != nil) != tc.err || len(got) != tc.n {
				t.Fatalf("OpenTEEs(%q) = %d, %v; want %d, err %v", tc.spec, len(got), err, tc.n, tc.err)
			}
		})
	}
}
