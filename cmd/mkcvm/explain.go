package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/spf13/cobra"
)

func init() { addCommand(newExplainCmd) }

func newExplainCmd() *cobra.Command {
	var f tpmInputFlags
	var manifestPath, shape, pcrsPath, bank string
	var asJSON, tdx bool
	cmd := &cobra.Command{
		Use:   "explain EVENTLOG [--kernel K ... | --manifest M] [--pcrs FILE]",
		Short: "Explain a TPM or TDX CC event log event by event against the prediction",
		Long: `Reads a binary TCG event log (binary_bios_measurements) and compares it event by
event with the prediction from the same inputs as 'mkcvm measure tpm', or with
the event log of a TPM shape in a manifest (--manifest). For each event it
prints PCR, type, digest and what it measures, marked match or differ; for a
differing event it names the input it depends on and, where the log shows it,
the value that input would need. --pcrs takes PCR values (tpm2_pcrread output,
mkcvm-init's MKCVM-PCR lines or "PCR<n> <hex>" lines) to check the log's
replay. Exits 0 only when everything matches, 1 otherwise.

A TDX CC event log (/sys/firmware/acpi/tables/data/CCEL) is recognised when
it parses as one and not as a TPM log, or with --tdx. It is compared with the
predicted CC event log and RTMRs of a TDX shape of --manifest (--shape, default
the first TDX shape); without --manifest its events are only described.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			alg, err := measure.ParseHashAlg(bank)
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			log, err := measure.ParseEventLog(args[0], raw)
			if !tdx && err != nil {
				if _, cerr := measure.ParseCCEL(args[0], raw); cerr == nil {
					tdx = true
				}
			}
			if tdx {
				for _, name := range []string{"kernel", "initrd", "append", "profile", "pcrs", "json"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s: not supported for a TDX CC event log (compare with --manifest)", name)
					}
				}
				return explainTDX(cmd, args[0], raw, manifestPath, shape)
			}
			if err != nil {
				return err
			}
			p, err := explainPrediction(&f, manifestPath, shape, log)
			if err != nil {
				return err
			}
			var quoted map[measure.HashAlg]map[uint32][]byte
			if pcrsPath != "" {
				text, err := os.ReadFile(pcrsPath)
				if err != nil {
					return err
				}
				if quoted, err = measure.ParsePCRValues(pcrsPath, string(text), alg); err != nil {
					return err
				}
			}
			x := measure.Explain(p, log, quoted)
			if asJSON {
				if err := writeExplainJSON(cmd, x); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), x.Text(alg))
			}
			if !x.AllMatch() {
				return &ExitError{Code: 1, Err: errors.New("event log differs from the prediction")}
			}
			return nil
		},
	}
	f.RegisterFlags(cmd.Flags(), true)
	fl := cmd.Flags()
	fl.StringVar(&manifestPath, "manifest", "", "manifest.json whose TPM shape's event log is the reference (instead of the input flags)")
	fl.StringVar(&shape, "shape", "", "with --manifest: the shape name (default: the only TPM shape; for a CC event log the first TDX shape)")
	fl.BoolVar(&tdx, "tdx", false, "EVENTLOG is a TDX CC event log (CCEL); detected when it parses only as one")
	fl.StringVar(&pcrsPath, "pcrs", "", "PCR values read from the TPM (tpm2_pcrread output or PCR<n> <hex> lines)")
	fl.StringVar(&bank, "bank", "sha256", "bank shown in the event table and for PCR lines without a bank")
	fl.BoolVar(&asJSON, "json", false, "print JSON: all_match, events (index, pcr, type, verdict, digests, predicted, measures, why) and pcrs")
	return cmd
}

func explainPrediction(f *tpmInputFlags, manifestPath, shape string, log *measure.EventLog) (*measure.Prediction, error) {
	if manifestPath == "" {
		req, err := f.request()
		if err != nil {
			return nil, err
		}
		if req.Banks == nil && req.Profile == nil {
			req.Banks = log.Algs()
		}
		return builder.PredictTPM(req)
	}
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", manifestPath, err)
	}
	var found []*manifest.Shape
	for i := range m.Shapes {
		s := &m.Shapes[i]
		if s.TPM != nil && (shape == "" || s.Name == shape) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("manifest %s: %d TPM shapes match %q (name one with --shape)", manifestPath, len(found), shape)
	}
	return builder.PredictionFromManifest(found[0].TPM)
}

// explainTDX explains a CC event log, against the TDX values of a manifest
// shape when manifestPath is given, and exits 1 on any mismatch.
func explainTDX(cmd *cobra.Command, name string, raw []byte, manifestPath, shape string) error {
	var want *manifest.TDXValues
	if manifestPath != "" {
		b, err := os.ReadFile(manifestPath)
		if err != nil {
			return err
		}
		m, err := manifest.Decode(b)
		if err != nil {
			return fmt.Errorf("reading manifest %s: %w", manifestPath, err)
		}
		for i := range m.Shapes {
			if s := &m.Shapes[i]; s.TDX != nil && (shape == "" || s.Name == shape) {
				want = s.TDX
				break
			}
		}
		if want == nil {
			if shape == "" {
				return fmt.Errorf("manifest %s: no TDX shape", manifestPath)
			}
			return fmt.Errorf("manifest %s: no TDX shape named %q", manifestPath, shape)
		}
	}
	n, err := builder.ExplainTDX(cmd.OutOrStdout(), name, raw, want)
	if err != nil {
		return err
	}
	if n > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("CC event log differs from the manifest: %d mismatches", n)}
	}
	if want != nil {
		fmt.Fprintln(cmd.OutOrStdout(), "all events and RTMRs match")
	}
	return nil
}

// explainJSON is the --json output of `mkcvm explain`.
type explainJSON struct {
	AllMatch bool               `json:"all_match"`
	Events   []explainEventJSON `json:"events"`
	PCRs     []explainPCRJSON   `json:"pcrs"`
}

type explainEventJSON struct {
	Index     int               `json:"index"` // 0: predicted event absent from the log
	PCR       uint32            `json:"pcr"`
	Type      string            `json:"type"`
	Verdict   string            `json:"verdict"`
	Digests   map[string]string `json:"digests,omitempty"`
	Predicted map[string]string `json:"predicted,omitempty"`
	Measures  string            `json:"measures"`
	Why       string            `json:"why,omitempty"`
}

type explainPCRJSON struct {
	Bank      string `json:"bank"`
	PCR       uint32 `json:"pcr"`
	Verdict   string `json:"verdict"`
	Predicted string `json:"predicted,omitempty"`
	Log       string `json:"log,omitempty"`
	TPM       string `json:"tpm,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func digestMap(e *measure.Event) map[string]string {
	if e == nil {
		return nil
	}
	m := map[string]string{}
	for _, d := range e.Digests {
		m[d.Alg.String()] = hex.EncodeToString(d.Value)
	}
	return m
}

func writeExplainJSON(cmd *cobra.Command, x *measure.Explanation) error {
	out := explainJSON{AllMatch: x.AllMatch(), Events: []explainEventJSON{}, PCRs: []explainPCRJSON{}}
	for _, v := range x.Events {
		e := v.Actual
		if e == nil {
			e = &v.Predicted.Event
		}
		j := explainEventJSON{Index: v.Index, PCR: e.PCR, Type: e.Type.String(), Verdict: string(v.Verdict),
			Measures: measure.DescribeEvent(e), Why: v.Hint}
		if v.Actual != nil {
			j.Digests = digestMap(v.Actual)
		}
		if v.Predicted != nil {
			j.Predicted = digestMap(&v.Predicted.Event)
			j.Measures = v.Predicted.Description
		}
		out.Events = append(out.Events, j)
	}
	for _, p := range x.PCRs {
		out.PCRs = append(out.PCRs, explainPCRJSON{Bank: p.Alg.String(), PCR: p.PCR, Verdict: string(p.Verdict),
			Predicted: hex.EncodeToString(p.Predicted), Log: hex.EncodeToString(p.Replayed), TPM: hex.EncodeToString(p.Quoted), Reason: p.Reason})
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
