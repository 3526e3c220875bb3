package evidence_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
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
