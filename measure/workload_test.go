package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kat is the workload of the known-answer test. The expected values come
// from an independent Python implementation of docs/runner.md
// (testdata/provenance/runner.md, "workload KAT").
var kat = WorkloadRef{
	Image:        "registry.example/app@sha256:" + strings.Repeat("ab", 32),
	ConfigDigest: "sha256:" + strings.Repeat("cd", 32),
	Args:         []string{"/hello", "--greeting", "hi there"},
	Env:          []string{"A=1", "B=two words"},
}

const (
	katPCR256     = "c4ba6f0115a19c61f8e7ed0bd2e2b2c1b5ae456dafcaba625eff6ec19d40c767"
	katPCR384     = "895e5662d1e215caffc547788a809a0d723798fea632fe05713003450ab550e59252e1023da9d2113873ed4beb0d23bc"
	katLog        = "9f624ff8df5127640b0ee074073a754e63fff768788fe77c97724a380e946d7b"
	katReportData = "b4830f8941f1f3736c94bb47ea9830a677aca5e0347508e019fa0aff1c1ac90e16a82b54b5c8eb1641fca474df7c39c6b1fda1080c7a95ac295f00f81bb739af"
	katTPMNonce   = "98850073308fa734ac30f9c9a7ce620cd1b0348599ab565e8304bd45a990ef0a"
	katPCR1       = "201056938d015867d0ec0bfcc0f7bcc4a8cf81fa"
	katPCR512     = "a2c5ebe4c89509e42e9316a1c567d80caf90a1fd835130a78fd6bbb582fa1eddcaf7610ce48236f95f90a41ad022628af927c1cdc1b58a2f2d1c02bb2a69c22b"
)

func TestPredictWorkloadKAT(t *testing.T) {
	ev, v, err := PredictWorkload(kat)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"pcr256": hex.EncodeToString(v.PCRSHA256[:]),
		"pcr384": hex.EncodeToString(v.PCRSHA384[:]),
		"rtmr":   hex.EncodeToString(v.RTMR[:]),
		"pcr1":   hex.EncodeToString(v.PCRSHA1[:]),
		"pcr512": hex.EncodeToString(v.PCRSHA512[:]),
	}
	log := MarshalWorkloadLog(ev)
	ld := sha256.Sum256(log)
	got["log"] = hex.EncodeToString(ld[:])
	b := WorkloadBinding{Nonce: []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, LogDigest: ld, PublicKey: []byte("example-public-key-der")}
	rd, tn := b.ReportData(), b.TPMNonce()
	got["report_data"] = hex.EncodeToString(rd[:])
	got["tpm_nonce"] = hex.EncodeToString(tn[:])
	want := map[string]string{"pcr256": katPCR256, "pcr384": katPCR384, "rtmr": katPCR384, "log": katLog, "pcr1": katPCR1, "pcr512": katPCR512,
		"report_data": katReportData, "tpm_nonce": katTPMNonce}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("values (-want +got):\n%s", d)
	}
	back, err := ParseWorkloadLog("kat", log)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ev, back); d != "" {
		t.Errorf("parsed log (-want +got):\n%s", d)
	}
	args, err := back[3].Items()
	if err != nil || !slicesEqual(args, kat.Args) {
		t.Errorf("args items = %q, %v; want %q", args, err, kat.Args)
	}
}

func slicesEqual(a, b []string) bool { return cmp.Equal(a, b) }

func TestImageDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("0a", 32)
	for _, tc := range []struct {
		name, ref, want, err string
	}{
		{name: "digest", ref: "10.0.2.100/app@" + d, want: d},
		{name: "tag and digest", ref: "r.io/app:v1@" + d, want: d},
		{name: "tag only", ref: "r.io/app:latest", err: "no digest"},
		{name: "short digest", ref: "r.io/app@sha256:abcd", err: "64 lowercase hex"},
		{name: "upper hex", ref: "r.io/app@sha256:" + strings.Repeat("0A", 32), err: "64 lowercase hex"},
		{name: "sha512", ref: "r.io/app@sha512:" + strings.Repeat("0a", 64), err: "want sha256"},
		{name: "no repo", ref: "@" + d, err: "empty repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ImageDigest(tc.ref)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ImageDigest(%q) = %q, %v; want error containing %q", tc.ref, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ImageDigest(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
			}
		})
	}
}

func TestParseWorkloadLogErrors(t *testing.T) {
	ev, _ := WorkloadEvents(kat)
	good := MarshalWorkloadLog(ev)
	flip := func(off int) []byte { b := bytes.Clone(good); b[off] ^= 1; return b }
	for _, tc := range []struct {
		name  string
		in    []byte
		field string
	}{
		{name: "truncated", in: good[:len(good)-1], field: "record[5].content"},
		{name: "recnum", in: flip(12), field: "record[0].recnum"},
		{name: "pcr", in: flip(13 + 5), field: "record[0].pcr"},
		{name: "digest", in: flip(19 + 5 + 5 + 3), field: "record[0].digests"},
		{name: "content", in: flip(13 + 6 + 95 + 10), field: "record[0].digests"},
		{name: "content length", in: flip(13 + 6 + 95 + 4), field: "record[0].content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWorkloadLog("log", tc.in)
			var fe *WorkloadLogError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v; want WorkloadLogError on %s", err, tc.field)
			}
		})
	}
}

func FuzzParseWorkloadLog(f *testing.F) {
	ev, _ := WorkloadEvents(kat)
	f.Add(MarshalWorkloadLog(ev))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		ev, err := ParseWorkloadLog("fuzz", b)
		if err != nil {
			return
		}
		if again := MarshalWorkloadLog(ev); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}
