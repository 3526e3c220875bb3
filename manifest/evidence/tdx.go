package evidence

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// TDXOptions are the trust inputs of a TDX quote verification.
type TDXOptions struct {
	// Now is the time certificates are checked at (from cmd/).
	Now time.Time
	// TrustedRoots overrides go-tdx-guest's embedded Intel SGX root CA.
	TrustedRoots *x509.CertPool
	// ReportData, if set, must equal REPORTDATA (zero-padded to 64).
	ReportData []byte
	// EventLog is the CC event log (CCEL data) the guest read. If set, it
	// is replayed against the quoted RTMRs and its events are compared
	// with the manifest's predicted events of every pinned RTMR.
	EventLog []byte
}

// VerifyTDX checks a TDX quote (v4): the PCK chain and quote signatures via
// go-tdx-guest (offline: no collateral, no CRL), then MRTD and every RTMR
// the manifest pins.
func VerifyTDX(quote []byte, shape *manifest.Shape, opts TDXOptions) *Report {
	r := &Report{}
	fail := func(what, detail string) { r.add(Check{Evidence: "tdx", What: what, Detail: detail}) }
	if shape.TDX == nil {
		fail("shape "+shape.Name, "manifest has no TDX values for this shape")
		return r
	}
	if opts.Now.IsZero() {
		fail("signature chain", "no verification time given")
		return r
	}
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		fail("quote", err.Error())
		return r
	}
	v4, ok := q.(*tpb.QuoteV4)
	if !ok {
		fail("quote", fmt.Sprintf("%T is not a v4 quote", q))
		return r
	}
	t := opts.Now
	vopts := &verify.Options{TrustedRoots: opts.TrustedRoots,
		Now: &verify.TimeSet{PckCertChain: t, TcbInfo: t, QeIdentity: t, PckCrl: t, RootCaCrl: t}}
	if err := verify.TdxQuote(v4, vopts); err != nil {
		fail("signature chain", err.Error())
		return r
	}
	r.add(Check{Evidence: "tdx", What: "signature chain", OK: true, Detail: "quote signed by a QE whose PCK chains to the Intel root"})
	body := v4.GetTdQuoteBody()
	cmp := func(what, want string, got []byte) {
		g := hex.EncodeToString(got)
		r.add(Check{Evidence: "tdx", What: what, Want: want, Got: g, OK: want == g, Detail: detailIf(want != g, "value differs")})
	}
	cmp("MRTD", shape.TDX.MRTD, body.GetMrTd())
	rtmrs := body.GetRtmrs()
	for i := range 4 {
		what := fmt.Sprintf("RTMR%d", i)
		if shape.TDX.RTMRBasis[i] == "not-pinned" {
			continue
		}
		if i >= len(rtmrs) {
			fail(what, "pinned but missing from the quote")
			continue
		}
		cmp(what, shape.TDX.RTMR[i], rtmrs[i])
	}
	if opts.ReportData != nil {
		w := make([]byte, 64)
		copy(w, opts.ReportData)
		cmp("REPORTDATA", hex.EncodeToString(w), body.GetReportData())
	}
	if opts.EventLog != nil {
		compareCCEL(r, shape.TDX, opts.EventLog, rtmrs)
	}
	return r
}

// compareCCEL replays the CC event log against the quoted RTMRs and
// aligns its events with the manifest's predicted events per pinned RTMR.
func compareCCEL(r *Report, tv *manifest.TDXValues, ccel []byte, quoted [][]byte) {
	l, err := measure.ParseCCEL("CC event log", ccel)
	if err != nil {
		r.add(Check{Evidence: "tdx", What: "CC event log", Detail: err.Error()})
		return
	}
	replay, err := measure.ReplayRTMRs(l)
	if err != nil {
		r.add(Check{Evidence: "tdx", What: "CC event log replay", Detail: err.Error()})
		return
	}
	for i := range min(len(quoted), measure.NumRTMRs) {
		g, w := hex.EncodeToString(replay[i][:]), hex.EncodeToString(quoted[i])
		r.add(Check{Evidence: "tdx", What: fmt.Sprintf("CC event log replay RTMR%d", i), Want: w, Got: g, OK: g == w,
			Detail: detailIf(g != w, "the log does not replay to the quoted RTMR")})
	}
	if len(tv.EventLog) == 0 {
		return
	}
	for i := range measure.NumRTMRs {
		if tv.RTMRBasis[i] == "not-pinned" {
			continue
		}
		mr := i + measure.CCMRIndexRTMR0
		var want []manifest.Event
		for _, e := range tv.EventLog {
			if e.PCR == mr {
				want = append(want, e)
			}
		}
		var got []logged
		for j, e := range l.Events {
			if int(e.PCR) == mr && e.Type != measure.EvNoAction {
				got = append(got, logged{index: j + 1, typ: e.Type.String(), digest: hex.EncodeToString(e.Digest(measure.AlgSHA384))})
			}
		}
		diffs := diffEvents(want, got, "sha384")
		c := Check{Evidence: "tdx", What: fmt.Sprintf("RTMR%d events", i), OK: len(diffs) == 0}
		if c.OK {
			c.Detail = fmt.Sprintf("%d events as predicted", len(got))
		} else {
			c.Detail = joinStrings(diffs)
		}
		r.add(c)
	}
}
