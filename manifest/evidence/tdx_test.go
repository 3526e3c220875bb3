package evidence_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/measure"
)

// TestVerifyTDX uses the Intel-signed sample quote shipped with
// go-tdx-guest (testing/testdata/tdx_prod_quote_SPR_E4.dat). The reference
// values are read from it by go-tdx-guest's own parser.
func TestVerifyTDX(t *testing.T) {
	q, err := abi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	body := q.(*tpb.QuoteV4).GetTdQuoteBody()
	shape := func(edit func(*manifest.TDXValues)) *manifest.Shape {
		tv := &manifest.TDXValues{MRTD: hex.EncodeToString(body.GetMrTd()), RTMRBasis: [4]string{"predicted", "predicted", "predicted", "predicted"}}
		for i, r := range body.GetRtmrs() {
			tv.RTMR[i] = hex.EncodeToString(r)
		}
		if edit != nil {
			edit(tv)
		}
		return &manifest.Shape{Name: "tdx", Platform: "tdx", TDX: tv}
	}
	// The sample's certificates are valid in mid-2023 (as go-tdx-guest's tests use).
	now := time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
	// Offset of MRTD in a v4 quote: 48-byte header + 136 (Intel TDX DCAP
	// Quoting Library API, Appendix 3, TD Quote Body).
	const offMRTD = 48 + 136
	tampered := bytes.Clone(testdata.RawQuote)
	tampered[offMRTD] ^= 1
	for _, tc := range []struct {
		name    string
		quote   []byte
		shape   *manifest.Shape
		now     time.Time
		wantErr []string
	}{
		{"genuine", testdata.RawQuote, shape(nil), now, nil},
		{"rtmr3 not pinned", testdata.RawQuote, shape(func(tv *manifest.TDXValues) { tv.RTMR[3] = ""; tv.RTMRBasis[3] = "not-pinned" }), now, nil},
		{"other RTMR1", testdata.RawQuote, shape(func(tv *manifest.TDXValues) { tv.RTMR[1] = strings.Repeat("ab", 48) }), now, []string{"RTMR1: value differs (manifest abab"}},
		{"other MRTD", testdata.RawQuote, shape(func(tv *manifest.TDXValues) { tv.MRTD = strings.Repeat("00", 48) }), now, []string{"MRTD: value differs"}},
		{"flipped byte in MRTD", tampered, shape(nil), now, []string{"signature chain"}},
		{"certificates expired", testdata.RawQuote, shape(nil), time.Date(2053, 1, 1, 0, 0, 0, 0, time.UTC), []string{"signature chain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := evidence.VerifyTDX(tc.quote, tc.shape, evidence.TDXOptions{Now: tc.now}).Err()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("VerifyTDX: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyTDX accepted the quote")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// cosCCEL returns the TDX quote and CC event log of a Container-Optimized
// OS 113 TD that go-tdx-guest ships as test data
// (testing/testdata/ccel/{cos-113-tdx-quote.dat,ccel_data.dat}).
func cosCCEL(t *testing.T) (quote, ccel []byte) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tdx-guest").Output()
	if err != nil {
		t.Fatalf("locating go-tdx-guest: %v", err)
	}
	d := filepath.Join(strings.TrimSpace(string(out)), "testing", "testdata", "ccel")
	if quote, err = os.ReadFile(filepath.Join(d, "cos-113-tdx-quote.dat")); err != nil {
		t.Fatal(err)
	}
	if ccel, err = os.ReadFile(filepath.Join(d, "ccel_data.dat")); err != nil {
		t.Fatal(err)
	}
	return quote, ccel
}

// TestVerifyTDXEventLog replays a real CC event log against its quote's
// RTMRs (read by go-tdx-guest's parser) and names doctored events.
func TestVerifyTDXEventLog(t *testing.T) {
	quote, ccel := cosCCEL(t)
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		t.Fatal(err)
	}
	body := q.(*tpb.QuoteV4).GetTdQuoteBody()
	l, err := measure.ParseCCEL("ccel", ccel)
	if err != nil {
		t.Fatal(err)
	}
	tv := &manifest.TDXValues{MRTD: hex.EncodeToString(body.GetMrTd()), RTMRBasis: [4]string{"predicted", "predicted", "predicted", "predicted"}}
	for i, r := range body.GetRtmrs() {
		tv.RTMR[i] = hex.EncodeToString(r)
	}
	for i, e := range l.Events {
		if e.Type == measure.EvNoAction {
			continue
		}
		tv.EventLog = append(tv.EventLog, manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(),
			Digests: map[string]string{"sha384": hex.EncodeToString(e.Digest(measure.AlgSHA384))}})
	}
	shape := &manifest.Shape{Name: "cos", Platform: "tdx", TDX: tv}
	doctor := func(f func(ev []measure.Event) []measure.Event) []byte {
		l2 := *l
		l2.Events = f(slices.Clone(l.Events))
		b, err := measure.MarshalCCEL(&l2)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The last RTMR1 (MR index 2) event, to remove or to insert after.
	idx := -1
	for i, e := range l.Events {
		if e.PCR == 2 && e.Type != measure.EvNoAction {
			idx = i
		}
	}
	removed := doctor(func(ev []measure.Event) []measure.Event { return slices.Delete(ev, idx, idx+1) })
	inserted := doctor(func(ev []measure.Event) []measure.Event {
		return slices.Insert(ev, idx+1, measure.NewEvent(2, measure.EvEFIBootServicesApp, []byte("x"), []byte("injected"), []measure.HashAlg{measure.AlgSHA384}))
	})
	now := time.Date(2024, time.August, 1, 0, 0, 0, 0, time.UTC) // inside the PCK certificate's validity
	for _, tc := range []struct {
		name    string
		ccel    []byte
		wantErr []string
	}{
		{"genuine", ccel, nil},
		{"event removed", removed, []string{"CC event log replay RTMR1: the log does not replay", "RTMR1 events: missing event"}},
		{"event inserted", inserted, []string{"CC event log replay RTMR1", "RTMR1 events: extra event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := evidence.VerifyTDX(quote, shape, evidence.TDXOptions{Now: now, EventLog: tc.ccel})
			err := rep.Err()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("VerifyTDX: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyTDX accepted the doctored log")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
