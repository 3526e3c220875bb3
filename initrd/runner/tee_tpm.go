package runner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/mkcvm/mkcvm/measure"
)

// TPM device nodes, resource manager first (Linux Documentation/tpm).
var tpmDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// tpmEventLog is the firmware event log the kernel exports (securityfs).
const tpmEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// TPM is a TPM 2.0 evidence source: it extends measure.WorkloadPCR and
// quotes PCRs 0-23 of the SHA-256 bank with an ECC P-256 attestation key
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

// Report implements TEE: a quote over SHA-256 PCRs 0-23 with the binding's
// TPM nonce as qualifying data, plus the firmware event log.
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
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256}
	for i := range 24 {
		sel.PCRs = append(sel.PCRs, i)
	}
	nonce := b.TPMNonce()
	q, err := ak.Quote(sel, nonce[:])
	if err != nil {
		return nil, fmt.Errorf("quoting PCRs: %w", err)
	}
	ev := &Evidence{Kind: t.Name(), AKPublic: pub, Quote: q.GetQuote(), Signature: q.GetRawSig(), ReportData: nonce[:]}
	pcrs := q.GetPcrs().GetPcrs()
	for _, i := range slices.Sorted(mapsKeys(pcrs)) {
		ev.PCRs = append(ev.PCRs, PCRValue{Bank: "sha256", Index: int(i), Value: pcrs[i]})
	}
	if t.eventLog != nil {
		if ev.EventLog, err = t.eventLog(); err != nil {
			return nil, fmt.Errorf("reading the firmware event log: %w", err)
		}
	}
	return ev, nil
}

func mapsKeys(m map[uint32][]byte) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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
