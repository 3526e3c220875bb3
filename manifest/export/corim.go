package export

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/veraison/corim/comid"
	"github.com/veraison/corim/corim"
	cose "github.com/veraison/go-cose"
)

// Named-information hash algorithm IDs (IANA "Named Information Hash
// Algorithm Registry", RFC 6920 section 9.4), as CoMID digests use them.
const (
	niSHA256 = 1
	niSHA384 = 7
	niSHA512 = 8
)

func niAlg(bank string) (uint64, bool) {
	switch bank {
	case "sha256":
		return niSHA256, true
	case "sha384":
		return niSHA384, true
	case "sha512":
		return niSHA512, true
	}
	return 0, false
}

// CoRIM returns a COSE_Sign1 signed CoRIM (ES256 with an ECDSA P-256
// key, EdDSA with an Ed25519 key) with one CoMID
// whose reference-value triples carry every pinned value: per shape an
// environment (vendor "mkcvm", model "<recipe>/<shape>/<platform>") and
// measurements keyed by uint: SNP 0 = launch digest; TDX 0 = MRTD,
// 1..4 = RTMR0..3; TPM the PCR index with one digest per bank.
func CoRIM(m *manifest.Manifest, key crypto.Signer) ([]byte, error) {
	digest, err := manifest.Digest(m)
	if err != nil {
		return nil, err
	}
	c := comid.NewComid().SetTagIdentity("mkcvm:"+digest, 0).
		AddEntity("mkcvm", nil, comid.RoleTagCreator, comid.RoleCreator)
	for _, s := range m.Shapes {
		rv, err := shapeRefVal(m, &s)
		if err != nil {
			return nil, err
		}
		if rv != nil {
			c.AddReferenceValue(*rv)
		}
	}
	if err := c.Valid(); err != nil {
		return nil, fmt.Errorf("comid: %w", err)
	}
	uc := corim.NewUnsignedCorim().SetID("mkcvm:" + digest).AddComid(*c)
	if uc == nil {
		return nil, fmt.Errorf("corim: adding comid failed")
	}
	sc := corim.SignedCorim{UnsignedCorim: *uc}
	sc.Meta.SetSigner("mkcvm", nil)
	if v := m.Validity; v != nil && v.ExpiresAt != "" {
		nb := time.Unix(m.Epoch, 0).UTC()
		na, err := time.Parse(manifest.TimeLayout, v.ExpiresAt)
		if err != nil {
			return nil, err
		}
		sc.Meta.SetValidity(na, &nb)
	}
	alg := cose.AlgorithmES256
	switch k := key.(type) {
	case ed25519.PrivateKey:
		alg = cose.AlgorithmEdDSA
	case *ecdsa.PrivateKey:
	default:
		return nil, fmt.Errorf("corim: %T keys are not supported (ECDSA P-256, Ed25519)", k)
	}
	signer, err := cose.NewSigner(alg, key)
	if err != nil {
		return nil, err
	}
	return sc.Sign(signer)
}

func shapeRefVal(m *manifest.Manifest, s *manifest.Shape) (*comid.ReferenceValue, error) {
	model := m.Recipe.Name + "/" + s.Name + "/" + s.Platform
	class := &comid.Class{}
	class.SetVendor("mkcvm").SetModel(model)
	ms := comid.NewMeasurements()
	add := func(key uint64, bank, hexv string) error {
		if hexv == "" {
			return nil
		}
		alg, ok := niAlg(bank)
		if !ok {
			return nil
		}
		b, err := hex.DecodeString(hexv)
		if err != nil {
			return fmt.Errorf("shape %q: %w", s.Name, err)
		}
		mm, err := comid.NewUintMeasurement(key)
		if err != nil {
			return err
		}
		ms.AddMeasurement(mm.AddDigest(alg, b))
		return nil
	}
	var err error
	switch {
	case s.SNP != nil:
		bank := "sha384"
		if s.SNP.Mode == "sev" {
			bank = "sha256"
		}
		err = add(0, bank, s.SNP.LaunchDigest)
	case s.TDX != nil:
		err = add(0, "sha384", s.TDX.MRTD)
		for i := range 4 {
			if err == nil && s.TDX.RTMRBasis[i] != "not-pinned" {
				err = add(uint64(i+1), "sha384", s.TDX.RTMR[i])
			}
		}
	case s.TPM != nil:
		err = addTPM(s.TPM, ms)
	}
	if err != nil {
		return nil, err
	}
	if len(*ms) == 0 {
		return nil, nil
	}
	return &comid.ReferenceValue{Environment: comid.Environment{Class: class}, Measurements: *ms}, nil
}

func addTPM(tv *manifest.TPMValues, ms *comid.Measurements) error {
	var idxs []int
	for k := range tv.Basis {
		if n, err := strconv.Atoi(k); err == nil && tv.Basis[k] != "not-pinned" {
			idxs = append(idxs, n)
		}
	}
	slices.Sort(idxs)
	for _, i := range idxs {
		mm, err := comid.NewUintMeasurement(uint64(i))
		if err != nil {
			return err
		}
		n := 0
		for _, bank := range slices.Sorted(maps.Keys(tv.PCRs)) {
			alg, ok := niAlg(bank)
			v := tv.PCRs[bank][strconv.Itoa(i)]
			if !ok || v == "" {
				continue
			}
			b, err := hex.DecodeString(v)
			if err != nil {
				return err
			}
			mm.AddDigest(alg, b)
			n++
		}
		if n > 0 {
			ms.AddMeasurement(mm)
		}
	}
	return nil
}
