package spec

// EvidenceResponse is the JSON body of GET /evidence and of the key-broker
// request. Byte fields are base64.
type EvidenceResponse struct {
	Nonce     []byte `json:"nonce"`
	PublicKey []byte `json:"public_key"` // boot key, PKIX DER (ECDH P-256)
	// WorkloadLog is the workload event log (measure.MarshalWorkloadLog);
	// LogSHA256 its SHA-256, bound into every piece of evidence.
	WorkloadLog    []byte          `json:"workload_log"`
	LogSHA256      string          `json:"log_sha256"`
	WorkloadEvents []ReadableEvent `json:"workload_events"`
	Evidence       []*Evidence     `json:"evidence"`
}

// ReadableEvent is a workload event for humans.
type ReadableEvent struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Evidence is one TEE's answer. Byte fields are base64 in JSON.
type Evidence struct {
	Kind string `json:"kind"`
	// Report is the SEV-SNP attestation report followed by its certificate
	// table as the kernel returns it, or the TDX quote.
	Report []byte `json:"report,omitempty"`
	// TPM: the AK public area (TPMT_PUBLIC), the quote (TPMS_ATTEST), its
	// signature (TPMT_SIGNATURE) and the quoted PCRs: one quote over the
	// SHA-256 then the SHA-384 bank, PCRs listed in that (pcrDigest) order.
	AKPublic  []byte     `json:"ak_public,omitempty"`
	Quote     []byte     `json:"quote,omitempty"`
	Signature []byte     `json:"signature,omitempty"`
	PCRs      []PCRValue `json:"pcrs,omitempty"`
	// EventLog is the firmware event log: the TCG log from securityfs for
	// a TPM, the CCEL ACPI table for TDX.
	EventLog []byte `json:"event_log,omitempty"`
	// Registers are the values of a software bank (tests, tee=none).
	Registers []PCRValue `json:"registers,omitempty"`
	// ReportData echoes the bound data: 64 bytes (SNP, TDX, software) or
	// the 32-byte TPM qualifying data.
	ReportData []byte `json:"report_data"`
}

// PCRValue is one register value.
type PCRValue struct {
	Bank  string `json:"bank"` // sha256, sha384
	Index int    `json:"index"`
	Value []byte `json:"value"`
}
