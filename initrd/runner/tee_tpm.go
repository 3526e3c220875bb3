package runner

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	tpmdirect "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"

	"github.com/mkcvm/mkcvm/measure"
)

// TPM device nodes, resource manager first (Linux Documentation/tpm).
var tpmDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// tpmEventLog is the firmware event log the kernel exports (securityfs).
const tpmEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// TPM is a TPM 2.0 evidence source: it extends measure.WorkloadPCR and
// quotes PCRs 0-23 of the SHA-256 and SHA-384 banks with an ECC P-256 attestation key
// (the TCG EK-style AK template of go-tpm-tools).
type TPM struct {
	rw       io.ReadWriter
	eventLog func() ([]byte, error)
}

// NewTPM returns a TPM evidence source over an open TPM. eventLog reads the
// firmware event log (nil: none).
func NewTPM(rw io.ReadWriter, eventLog func() ([]byte, error)) *TPM {
	return &TPM{rw: rw, eventLog: eventLog}
}

// OpenTPM opens the guest's TPM device, or returns ErrNoTEE.
func OpenTPM() (*TPM, error) {
	for _, p := range tpmDevices {
		rwc, err := tpm2.OpenTPM(p)
		if err == nil {
			return NewTPM(rwc, func() ([]byte, error) { return os.ReadFile(tpmEventLog) }), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening %s: %w", p, err)
		}
	}
	return nil, fmt.Errorf("%w: no %v", ErrNoTEE, tpmDevices)
}

// Name implements TEE.
func (*TPM) Name() string { return "tpm" }

// tpmBanks are the banks the runner extends, SHA-256 first (required).
var tpmBanks = []struct {
	alg  tpm2.Algorithm
	hash crypto.Hash
}{{tpm2.AlgSHA256, crypto.SHA256}, {tpm2.AlgSHA1, crypto.SHA1}, {tpm2.AlgSHA384, crypto.SHA384}, {tpm2.AlgSHA512, crypto.SHA512}}

// Extend implements TEE: TPM2_PCR_Extend of the event's digest into every
// bank, so no bank of the workload PCR is left at its reset value for other
// software to fill. A TPM ignores digests for banks it has not allocated
// (TPM 2.0 Library Part 3, section 22.2) and rejects algorithms it does not
// implement, which is tolerated for all but SHA-256.
func (t *TPM) Extend(e measure.WorkloadEvent) error {
	h := tpmutil.Handle(measure.WorkloadPCR)
	for i, b := range tpmBanks {
		err := tpm2.PCRExtend(t.rw, h, b.alg, e.Digest(b.hash), "")
		if err != nil && i == 0 {
			return fmt.Errorf("extending PCR %d sha256: %w", measure.WorkloadPCR, err)
		}
	}
	return nil
}

// quoteBanks are the PCR banks the runner quotes, in quote order: the banks
// a manifest pins (builder: sha256 and sha384). SHA-256 is required; SHA-384
// is quoted when the TPM has it allocated.
var quoteBanks = []struct {
	name   string
	legacy tpm2.Algorithm
	direct tpmdirect.TPMIAlgHash
}{{"sha256", tpm2.AlgSHA256, tpmdirect.TPMAlgSHA256}, {"sha384", tpm2.AlgSHA384, tpmdirect.TPMAlgSHA384}}

// Report implements TEE: one TPM2_Quote over PCRs 0-23 of the SHA-256 and
// (if allocated) SHA-384 banks, with the binding's TPM nonce as qualifying
// data, plus the quoted values of both banks and the firmware event log.
// A single quote with two TPMS_PCR_SELECTIONs makes the TPM hash both
// banks' values at one instant (TPM 2.0 Library Part 3, section 18.4).
func (t *TPM) Report(_ context.Context, b measure.WorkloadBinding) (*Evidence, error) {
	ak, err := client.AttestationKeyECC(t.rw)
	if err != nil {
		return nil, fmt.Errorf("creating attestation key: %w", err)
	}
	defer ak.Close()
	pub, err := ak.PublicArea().Encode()
	if err != nil {
		return nil, err
	}
	allocated, err := client.AllocatedPCRs(t.rw)
	if err != nil {
		return nil, err
	}
	tp := transport.FromReadWriter(t.rw)
	rp, err := tpmdirect.ReadPublic{ObjectHandle: tpmdirect.TPMHandle(ak.Handle())}.Execute(tp)
	if err != nil {
		return nil, fmt.Errorf("reading the attestation key's name: %w", err)
	}
	var sels []tpmdirect.TPMSPCRSelection
	var banks []int // indices into quoteBanks
	for i, qb := range quoteBanks {
		if !slices.ContainsFunc(allocated, func(s tpm2.PCRSelection) bool { return s.Hash == qb.legacy }) {
			if i == 0 {
				return nil, fmt.Errorf("the TPM has no %s PCR bank allocated", qb.name)
			}
			continue
		}
		sels = append(sels, tpmdirect.TPMSPCRSelection{Hash: qb.direct, PCRSelect: tpmdirect.PCClientCompatible.PCRs(
			0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)})
		banks = append(banks, i)
	}
	nonce := b.TPMNonce()
	// The PCR values are read after the quote; a concurrent extend between
	// the two shows as a pcrDigest mismatch, so retry a few times.
	for range 3 {
		q, err := tpmdirect.Quote{
			SignHandle:     tpmdirect.AuthHandle{Handle: tpmdirect.TPMHandle(ak.Handle()), Name: rp.Name, Auth: tpmdirect.PasswordAuth(nil)},
			QualifyingData: tpmdirect.TPM2BData{Buffer: nonce[:]},
			InScheme:       tpmdirect.TPMTSigScheme{Scheme: tpmdirect.TPMAlgNull},
			PCRSelect:      tpmdirect.TPMLPCRSelection{PCRSelections: sels},
		}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("quoting PCRs: %w", err)
		}
		ev := &Evidence{Kind: t.Name(), AKPublic: pub, Quote: q.Quoted.Bytes(), Signature: tpmdirect.Marshal(q.Signature), ReportData: nonce[:]}
		h := sha256.New() // the AK's signing hash (go-tpm-tools ECC AK template)
		for _, i := range banks {
			vals, err := client.ReadPCRs(t.rw, client.FullPcrSel(quoteBanks[i].legacy))
			if err != nil {
				return nil, fmt.Errorf("reading %s PCRs: %w", quoteBanks[i].name, err)
			}
			for pcr := range 24 {
				v, ok := vals.GetPcrs()[uint32(pcr)]
				if !ok {
					return nil, fmt.Errorf("reading %s PCRs: no PCR %d", quoteBanks[i].name, pcr)
				}
				h.Write(v)
				ev.PCRs = append(ev.PCRs, PCRValue{Bank: quoteBanks[i].name, Index: pcr, Value: v})
			}
		}
		att, err := tpmdirect.Unmarshal[tpmdirect.TPMSAttest](ev.Quote)
		if err != nil {
			return nil, fmt.Errorf("decoding the quote: %w", err)
		}
		info, err := att.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("decoding the quote: %w", err)
		}
		if !bytes.Equal(info.PCRDigest.Buffer, h.Sum(nil)) {
			continue
		}
		if t.eventLog != nil {
			if ev.EventLog, err = t.eventLog(); err != nil {
				return nil, fmt.Errorf("reading the firmware event log: %w", err)
			}
		}
		return ev, nil
	}
	return nil, errors.New("quoting PCRs: the PCR values changed during every quote attempt")
}

// Random returns n bytes from the TPM's RNG (TPM2_GetRandom), used to seed
// the kernel's pool at boot.
func (t *TPM) Random(n int) ([]byte, error) {
	var out []byte
	for len(out) < n {
		b, err := tpm2.GetRandom(t.rw, uint16(min(n-len(out), 32)))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}
