package runner

import (
	"bytes"
	"crypto/ecdsa"
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
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"

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

// TestTPMSimulator extends the reference TPM 2.0 simulator (Microsoft's
// implementation, via go-tpm-tools) and checks PCR 15 against the replay,
// then verifies the quote: signature by the AK, qualifying data, PCR digest.
func TestTPMSimulator(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tp := NewTPM(sim, func() ([]byte, error) { return []byte("firmware log"), nil })
	events, want, err := measure.PredictWorkload(testRef)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := tp.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, bank := range []struct {
		alg  tpm2.Algorithm
		want []byte
	}{{tpm2.AlgSHA256, want.PCRSHA256[:]}, {tpm2.AlgSHA384, want.PCRSHA384[:]}} {
		got, err := tpm2.ReadPCR(sim, measure.WorkloadPCR, bank.alg)
		if err != nil {
			t.Fatalf("reading PCR %d bank %v: %v", measure.WorkloadPCR, bank.alg, err)
		}
		if !bytes.Equal(got, bank.want) {
			t.Errorf("PCR %d bank %v = %x, replay %x", measure.WorkloadPCR, bank.alg, got, bank.want)
		}
	}
	b := testBinding(t)
	ev, err := tp.Report(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	verifyTPMQuote(t, ev, b, want.PCRSHA256[:])
	if string(ev.EventLog) != "firmware log" {
		t.Errorf("event log = %q", ev.EventLog)
	}
}

func verifyTPMQuote(t *testing.T, ev *Evidence, b measure.WorkloadBinding, pcr15 []byte) {
	t.Helper()
	pub, err := tpm2.DecodePublic(ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pub.Key()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(ev.Signature))
	if err != nil {
		t.Fatal(err)
	}
	qd := sha256.Sum256(ev.Quote)
	if !ecdsa.Verify(key.(*ecdsa.PublicKey), qd[:], sig.ECC.R, sig.ECC.S) {
		t.Fatal("quote signature does not verify with the AK")
	}
	att, err := tpm2.DecodeAttestationData(ev.Quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := b.TPMNonce()
	if !bytes.Equal(att.ExtraData, nonce[:]) {
		t.Errorf("quote extra data %x, want the binding %x", att.ExtraData, nonce)
	}
	h := sha256.New()
	var got15 []byte
	for i, p := range ev.PCRs {
		if p.Index != i {
			t.Fatalf("PCRs[%d] is PCR %d", i, p.Index)
		}
		h.Write(p.Value)
		if p.Index == measure.WorkloadPCR {
			got15 = p.Value
		}
	}
	if !bytes.Equal(h.Sum(nil), att.AttestedQuoteInfo.PCRDigest) {
		t.Error("quoted PCR digest does not match the served PCR values")
	}
	if !bytes.Equal(got15, pcr15) {
		t.Errorf("served PCR %d = %x, want %x", measure.WorkloadPCR, got15, pcr15)
	}
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
