package runner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	tdxclient "github.com/google/go-tdx-guest/client"
	"github.com/google/go-tdx-guest/rtmr"

	"github.com/mkcvm/mkcvm/measure"
)

// ccelTable is the TDX firmware event log (CC Event Log ACPI table, UEFI
// 2.10 section 38.4.2) as Linux exports it.
const ccelTable = "/sys/firmware/acpi/tables/data/CCEL"

// TDXQuoter returns a TDX quote whose TDREPORT carries reportData.
type TDXQuoter interface {
	GetRawQuote(reportData [64]byte) ([]uint8, error)
}

// TDX is an Intel TDX evidence source: it extends RTMR measure.WorkloadRTMR
// and returns quotes through configfs-tsm.
type TDX struct {
	q      TDXQuoter
	extend func(digest []byte) error
	ccel   func() ([]byte, error)
}

// NewTDX returns a TDX source. extend extends the workload RTMR with a
// SHA-384 digest; ccel reads the firmware event log (nil: none).
func NewTDX(q TDXQuoter, extend func([]byte) error, ccel func() ([]byte, error)) *TDX {
	return &TDX{q: q, extend: extend, ccel: ccel}
}

// OpenTDX opens the guest's TDX interfaces, or returns ErrNoTEE.
func OpenTDX() (*TDX, error) {
	qp, err := tdxclient.GetQuoteProvider()
	if err != nil || qp.IsSupported() != nil {
		return nil, fmt.Errorf("%w: no TDX quote interface (configfs-tsm)", ErrNoTEE)
	}
	return NewTDX(qp, extendRTMR, func() ([]byte, error) { return os.ReadFile(ccelTable) }), nil
}

// extendRTMR uses the sysfs measurement interface (Linux 6.16+) and falls
// back to configfs-tsm rtmrs.
func extendRTMR(d []byte) error {
	err := rtmr.ExtendDigestSysfs(measure.WorkloadRTMR, d)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	c, cerr := linuxtsm.MakeClient()
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	return ExtendRTMRClient(c, d)
}

// ExtendRTMRClient extends the workload RTMR through a configfs-tsm client.
func ExtendRTMRClient(c configfsi.Client, d []byte) error {
	return rtmr.ExtendDigestClient(c, measure.WorkloadRTMR, d)
}

// Name implements TEE.
func (*TDX) Name() string { return "tdx" }

// Extend implements TEE.
func (t *TDX) Extend(e measure.WorkloadEvent) error {
	if err := t.extend(e.Digest(crypto.SHA384)); err != nil {
		return fmt.Errorf("extending RTMR%d: %w", measure.WorkloadRTMR, err)
	}
	return nil
}

// Report implements TEE.
func (t *TDX) Report(_ context.Context, b measure.WorkloadBinding) (*Evidence, error) {
	rd := b.ReportData()
	return t.report(rd)
}

func (t *TDX) report(rd [64]byte) (*Evidence, error) {
	q, err := t.q.GetRawQuote(rd)
	if err != nil {
		return nil, fmt.Errorf("getting TDX quote: %w", err)
	}
	ev := &Evidence{Kind: t.Name(), Report: q, ReportData: rd[:]}
	if t.ccel != nil {
		if ev.EventLog, err = t.ccel(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading CCEL: %w", err)
		}
	}
	return ev, nil
}
