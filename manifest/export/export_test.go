package export_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	ita "github.com/in-toto/attestation/go/v1"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/export"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
	"github.com/veraison/corim/comid"
	"github.com/veraison/corim/corim"
	"google.golang.org/protobuf/encoding/protojson"
)

func strictDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func TestRVPS(t *testing.T) {
	m := manifesttest.Sample()
	b, err := export.RVPS(m)
	if err != nil {
		t.Fatal(err)
	}
	var msg struct{ Version, Type, Payload string }
	strictDecode(t, b, &msg)
	if msg.Version != "0.1.0" || msg.Type != "sample" {
		t.Errorf("message header %+v", msg)
	}
	payload, err := base64.StdEncoding.DecodeString(msg.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string][]string
	strictDecode(t, payload, &got)
	s := m.Shapes
	want := map[string][]string{
		"snp_launch_measurement": {s[0].SNP.LaunchDigest},
		"mr_td":                  {s[1].TDX.MRTD},
		"rtmr_0":                 {s[1].TDX.RTMR[0]},
		"rtmr_1":                 {s[1].TDX.RTMR[1]},
		"rtmr_2":                 {s[1].TDX.RTMR[2]},
		"tpm_pcr0":               {s[2].TPM.PCRs["sha256"]["0"]},
		"tpm_pcr4":               {s[2].TPM.PCRs["sha256"]["4"]},
		"tpm_pcr9":               {s[2].TPM.PCRs["sha256"]["9"]},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("RVPS payload (-want +got):\n%s", d)
	}
}

func TestConstellation(t *testing.T) {
	m := manifesttest.Sample()
	b, err := export.Constellation(m)
	if err != nil {
		t.Fatal(err)
	}
	var got export.ConstellationMeasurements
	strictDecode(t, b, &got)
	if len(got.List) != 2 || got.List[0].AttestationVariant != "qemu-tdx" || got.List[1].AttestationVariant != "qemu-vtpm" {
		t.Fatalf("variants: %+v", got.List)
	}
	tdx, tpm := got.List[0].Measurements, got.List[1].Measurements
	if tdx["0"].Expected != m.Shapes[1].TDX.MRTD || tdx["2"].Expected != m.Shapes[1].TDX.RTMR[1] {
		t.Errorf("tdx measurements %+v", tdx)
	}
	if _, ok := tdx["4"]; ok {
		t.Errorf("not-pinned RTMR3 exported")
	}
	if !tpm["0"].WarnOnly || tpm["4"].WarnOnly || tpm["4"].Expected != m.Shapes[2].TPM.PCRs["sha256"]["4"] {
		t.Errorf("tpm measurements %+v", tpm)
	}
}

// TestInToto parses the export with the in-toto attestation library.
func TestInToto(t *testing.T) {
	m := manifesttest.Sample()
	b, err := export.InToto(m)
	if err != nil {
		t.Fatal(err)
	}
	var st ita.Statement
	if err := protojson.Unmarshal(b, &st); err != nil {
		t.Fatalf("in-toto library rejects the statement: %v", err)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("in-toto Validate: %v", err)
	}
	if st.GetPredicateType() != manifest.PredicateType || len(st.GetSubject()) != len(m.Artifacts)+1 {
		t.Errorf("statement: %v", &st)
	}
	if got := st.GetSubject()[1].GetDigest()["sha256"]; got != m.Artifacts[1].SHA256 {
		t.Errorf("subject digest %s, want %s", got, m.Artifacts[1].SHA256)
	}
}

// TestCoRIM parses and verifies the export with veraison/corim.
func TestCoRIM(t *testing.T) {
	m := manifesttest.Sample()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := export.CoRIM(m, key)
	if err != nil {
		t.Fatal(err)
	}
	var sc corim.SignedCorim
	if err := sc.FromCOSE(b); err != nil {
		t.Fatalf("FromCOSE: %v", err)
	}
	if err := sc.Verify(&key.PublicKey); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	eb, err := export.CoRIM(m, edKey)
	if err != nil {
		t.Fatal(err)
	}
	var esc corim.SignedCorim
	if err := esc.FromCOSE(eb); err != nil {
		t.Fatalf("FromCOSE (EdDSA): %v", err)
	}
	if err := esc.Verify(edKey.Public()); err != nil {
		t.Fatalf("Verify (EdDSA): %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := sc.Verify(&other.PublicKey); err == nil {
		t.Errorf("Verify accepted another key")
	}
	tampered := bytes.Clone(b)
	tampered[len(tampered)/2] ^= 1
	var sc2 corim.SignedCorim
	if err := sc2.FromCOSE(tampered); err == nil && sc2.Verify(&key.PublicKey) == nil {
		t.Errorf("tampered CoRIM verified")
	}
	if len(sc.UnsignedCorim.Tags) != 1 {
		t.Fatalf("%d tags", len(sc.UnsignedCorim.Tags))
	}
	var c comid.Comid
	if err := c.FromCBOR(sc.UnsignedCorim.Tags[0][3:]); err != nil { // strip CBOR tag 506
		t.Fatalf("comid: %v", err)
	}
	if err := c.Valid(); err != nil {
		t.Fatalf("comid Valid: %v", err)
	}
	rvs := *c.Triples.ReferenceValues
	if len(rvs) != 3 {
		t.Fatalf("%d reference values, want 3", len(rvs))
	}
	snp := rvs[0]
	if *snp.Environment.Class.Model != "sample/snp-4/snp" {
		t.Errorf("model %q", *snp.Environment.Class.Model)
	}
	d := (*snp.Measurements[0].Val.Digests)[0]
	if d.HashAlgID != 7 || hex.EncodeToString(d.HashValue) != m.Shapes[0].SNP.LaunchDigest {
		t.Errorf("SNP digest %d %x", d.HashAlgID, d.HashValue)
	}
}
