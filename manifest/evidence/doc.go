// Package evidence checks attestation evidence from a confidential VM
// against a reference-value manifest: a TPM 2.0 quote plus its TCG event
// log (TPM 2.0 Library Part 2 sections 10.12 TPMS_ATTEST and 11.3
// TPMT_SIGNATURE; TCG PC Client PFP 1.05 section 10 for the log, parsed
// and replayed by package measure), an AMD SEV-SNP attestation report
// (SEV-SNP ABI 1.55 section 7.3; signature chain via go-sev-guest), an
// Intel TDX quote v4 (via go-tdx-guest) with its optional CC event log
// (replayed against the quoted RTMRs by package measure), and the
// in-guest runner's GET /evidence answer, whose binding
// (measure.WorkloadBinding) is checked before each TEE's evidence.
//
// Every comparison reports all mismatches, each naming the register or
// event. A register the manifest pins must be present in the evidence.
// Left out: SNP TCB/platform-info policy, TDX collateral (TCB status) and
// revocation checks, which need network access.
package evidence
