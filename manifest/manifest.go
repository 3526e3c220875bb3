package manifest

// SchemaVersion identifies the manifest layout. Bump it on any incompatible
// change; verifiers reject versions they do not know.
const SchemaVersion = "mkcvm.dev/manifest/v1"

// Manifest is the reference-value manifest written as manifest.json by
// `mkcvm build`. Field order is the serialization order; encode it with
// Encode so the bytes are canonical.
type Manifest struct {
	Schema        string     `json:"schema"`
	Recipe        Recipe     `json:"recipe"`
	Epoch         int64      `json:"epoch"`
	Toolchain     Toolchain  `json:"toolchain"`
	Inputs        []Input    `json:"inputs"`
	Artifacts     []Artifact `json:"artifacts"`
	Cmdline       string     `json:"cmdline"`
	Shapes        []Shape    `json:"shapes"`
	Validity      *Validity  `json:"validity,omitempty"`
	Supersedes    []string   `json:"supersedes,omitempty"`
	Revokes       []string   `json:"revokes,omitempty"`
	AllowUnpinned bool       `json:"allow_unpinned,omitempty"`
}

// Recipe identifies the recipe a build came from.
type Recipe struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Text is the recipe file verbatim, so a rebuild needs nothing else.
	Text string `json:"text,omitempty"`
}

// Toolchain records what compiled the Go parts of the artifacts.
type Toolchain struct {
	Go      string   `json:"go"`
	Modules []Module `json:"modules"`
	// Env is the explicit build environment used for in-image binaries.
	Env []string `json:"env,omitempty"`
}

// Module is one Go module version that went into an artifact.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Sum     string `json:"sum,omitempty"`
}

// Input is one pinned recipe input.
type Input struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Artifact is one output file of a build.
type Artifact struct {
	Name   string `json:"name"` // file name inside the output directory
	Role   string `json:"role"` // firmware, firmware-vars, kernel, initrd, cmdline, disk, uki
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Validity bounds when the manifest may be used. IssuedAt derives from the
// build epoch, never from a clock.
type Validity struct {
	IssuedAt  string `json:"issued_at"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// Shape is a VM shape with the reference values computed for it.
type Shape struct {
	Name          string `json:"name"`
	Platform      string `json:"platform"` // snp, seves, sev, tdx, tpm
	VCPUs         int    `json:"vcpus"`
	VCPUType      string `json:"vcpu_type,omitempty"`
	VCPUSig       string `json:"vcpu_sig,omitempty"`
	VMM           string `json:"vmm,omitempty"`
	VMMVersion    string `json:"vmm_version,omitempty"`
	Machine       string `json:"machine,omitempty"`
	MemoryMiB     int    `json:"memory_mib,omitempty"`
	GuestFeatures string `json:"guest_features,omitempty"`
	Policy        string `json:"policy,omitempty"`
	PageOrder     string `json:"page_order,omitempty"`
	Profile       string `json:"profile,omitempty"`

	SNP *SNPValues `json:"snp,omitempty"`
	TDX *TDXValues `json:"tdx,omitempty"`
	TPM *TPMValues `json:"tpm,omitempty"`
	// Notes are plain-words caveats, e.g. that the launch digest does not
	// cover the kernel because the firmware has no kernel-hashes section.
	Notes []string `json:"notes,omitempty"`
}

// SNPValues are the SEV/SEV-ES/SEV-SNP reference values of a shape.
type SNPValues struct {
	Mode         string `json:"mode"` // snp, seves, sev
	LaunchDigest string `json:"launch_digest"`
	KernelHashes bool   `json:"kernel_hashes"`
	OVMFHash     string `json:"ovmf_hash,omitempty"`
	CoversKernel bool   `json:"covers_kernel"`
}

// TDXValues are the TDX reference values of a shape.
type TDXValues struct {
	MRTD      string    `json:"mrtd"`
	RTMR      [4]string `json:"rtmr"`
	RTMRBasis [4]string `json:"rtmr_basis"` // predicted, profile, not-pinned
	EventLog  []Event   `json:"event_log,omitempty"`
}

// TPMValues are the vTPM PCR reference values of a shape.
type TPMValues struct {
	// PCRs maps bank ("sha256", "sha384") to PCR index (decimal) to hex.
	PCRs map[string]map[string]string `json:"pcrs"`
	// Basis maps PCR index (decimal) to predicted, profile or not-pinned.
	Basis    map[string]string `json:"basis"`
	Why      map[string]string `json:"why,omitempty"`
	EventLog []Event           `json:"event_log,omitempty"`
	// WorkloadLog are the runner's predicted workload events (PCR 15,
	// measure.WorkloadPCR), the records of the CEL-style log the runner
	// serves rather than firmware events: Index is the record number
	// (from 0), Type the workload event type (image-ref ... separator),
	// Data the hex event TLV the digests cover.
	WorkloadLog []Event `json:"workload_log,omitempty"`
}

// Event is one predicted event-log entry in readable form.
type Event struct {
	Index       int               `json:"index"`
	PCR         int               `json:"pcr"`
	Type        string            `json:"type"`
	Digests     map[string]string `json:"digests"`
	Description string            `json:"description,omitempty"`
	Data        string            `json:"data,omitempty"` // hex event data
}
