package export

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/mkcvm/mkcvm/manifest"
)

func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RVPSMessage is Trustee's RVPS register message.
type RVPSMessage struct {
	Version string `json:"version"`
	Type    string `json:"type"`
	Payload string `json:"payload"` // base64 of the sample provenance JSON
}

// RVPSValues returns the reference values in Trustee's naming: name ->
// sorted, de-duplicated hex values across all shapes. Not-pinned
// registers are left out.
func RVPSValues(m *manifest.Manifest) map[string][]string {
	vals := map[string][]string{}
	add := func(k, v string) {
		if v != "" && !slices.Contains(vals[k], v) {
			vals[k] = append(vals[k], v)
		}
	}
	for _, s := range m.Shapes {
		if s.SNP != nil && s.SNP.Mode == "snp" {
			add("snp_launch_measurement", s.SNP.LaunchDigest)
		}
		if s.TDX != nil {
			add("mr_td", s.TDX.MRTD)
			for i := range 4 {
				if s.TDX.RTMRBasis[i] != "not-pinned" {
					add("rtmr_"+strconv.Itoa(i), s.TDX.RTMR[i])
				}
			}
		}
		if s.TPM != nil {
			for idx, v := range s.TPM.PCRs["sha256"] {
				if s.TPM.Basis[idx] != "not-pinned" {
					add("tpm_pcr"+idx, v)
				}
			}
		}
	}
	for _, k := range slices.Collect(maps.Keys(vals)) {
		slices.Sort(vals[k])
	}
	return vals
}

// RVPS returns the RVPS register message for m.
func RVPS(m *manifest.Manifest) ([]byte, error) {
	payload, err := json.Marshal(RVPSValues(m)) // map keys sorted by encoding/json
	if err != nil {
		return nil, err
	}
	return encodeJSON(RVPSMessage{Version: "0.1.0", Type: "sample", Payload: base64.StdEncoding.EncodeToString(payload)})
}

// ConstellationMeasurement is one expected register value.
type ConstellationMeasurement struct {
	Expected string `json:"expected"`
	WarnOnly bool   `json:"warnOnly"`
}

// ConstellationImage is one attestation variant's measurements.
type ConstellationImage struct {
	CSP                string                              `json:"csp"`
	AttestationVariant string                              `json:"attestationVariant"`
	Measurements       map[string]ConstellationMeasurement `json:"measurements"`
}

// ConstellationMeasurements is Constellation's ImageMeasurementsV2.
type ConstellationMeasurements struct {
	Version string               `json:"version"`
	Ref     string               `json:"ref"`
	Stream  string               `json:"stream"`
	List    []ConstellationImage `json:"list"`
}

// Constellation returns a measurements.json: TPM shapes as "qemu-vtpm"
// (PCR index -> sha256 value; profile-derived PCRs are warnOnly), TDX
// shapes as "qemu-tdx" (0 = MRTD, 1..4 = RTMR0..3).
func Constellation(m *manifest.Manifest) ([]byte, error) {
	out := ConstellationMeasurements{Version: fmt.Sprintf("%s@%d", m.Recipe.Name, m.Epoch), Ref: "-", Stream: "stable"}
	for _, s := range m.Shapes {
		switch {
		case s.TPM != nil:
			ms := map[string]ConstellationMeasurement{}
			for idx, v := range s.TPM.PCRs["sha256"] {
				switch s.TPM.Basis[idx] {
				case "predicted":
					ms[idx] = ConstellationMeasurement{Expected: v}
				case "profile":
					ms[idx] = ConstellationMeasurement{Expected: v, WarnOnly: true}
				}
			}
			out.List = append(out.List, ConstellationImage{CSP: "QEMU", AttestationVariant: "qemu-vtpm", Measurements: ms})
		case s.TDX != nil:
			ms := map[string]ConstellationMeasurement{"0": {Expected: s.TDX.MRTD}}
			for i := range 4 {
				if s.TDX.RTMRBasis[i] != "not-pinned" {
					ms[strconv.Itoa(i+1)] = ConstellationMeasurement{Expected: s.TDX.RTMR[i], WarnOnly: s.TDX.RTMRBasis[i] == "profile"}
				}
			}
			out.List = append(out.List, ConstellationImage{CSP: "QEMU", AttestationVariant: "qemu-tdx", Measurements: ms})
		}
	}
	if len(out.List) == 0 {
		return nil, fmt.Errorf("manifest has no TPM or TDX shape: Constellation has no variant for SNP launch digests alone")
	}
	return encodeJSON(out)
}

// InToto returns the unsigned in-toto statement (reference values as
// predicate), indented.
func InToto(m *manifest.Manifest) ([]byte, error) {
	st, err := manifest.NewStatement(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, st, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
