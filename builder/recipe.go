package builder

// Recipe is a parsed recipe file (TOML). It is a plain value: parsing has
// no side effects. See recipes/README.md for the documented format.
//
// DRAFT CONTRACT: the foundation work owns parsing and validation; other
// work reads these fields. Add fields, do not rename them.
type Recipe struct {
	Name string `toml:"name"`
	// Epoch is the build epoch (seconds since 1970, SOURCE_DATE_EPOCH
	// style) used for every timestamp in every artifact.
	Epoch int64 `toml:"epoch"`
	// Cmdline is the kernel command line, exact bytes.
	Cmdline string `toml:"cmdline"`

	Inputs map[string]Input `toml:"inputs"` // keyed by input name
	// Firmware names the input (key of Inputs) used as the OVMF image
	// (combined VARS+CODE, e.g. OVMF.fd), and optionally split CODE/VARS.
	Firmware FirmwareRef `toml:"firmware"`
	Kernel   string      `toml:"kernel"` // key of Inputs
	Initrd   InitrdSpec  `toml:"initrd"`
	Shapes   []Shape     `toml:"shape"`
	// Disk, when set, asks for a GPT disk image with a (signed) UKI on its
	// EFI system partition (builder/disk_recipe.go, docs/disk.md).
	Disk *DiskSpec `toml:"disk"`
}

// FirmwareRef selects firmware inputs.
type FirmwareRef struct {
	Image string `toml:"image"` // combined VARS+CODE flash image input
	Code  string `toml:"code"`  // CODE-only pflash input (optional)
	Vars  string `toml:"vars"`  // VARS template input (optional)
	// Source builds the firmware from a pinned Debian edk2 source package
	// instead of taking a prebuilt image (see firmware_recipe.go). When set,
	// Image, Code and Vars are empty.
	Source *FirmwareSource `toml:"source"`
}

// Input is one pinned input. Exactly one source kind is set.
type Input struct {
	SHA256 string `toml:"sha256"`
	Size   int64  `toml:"size"`
	// Sources, exactly one of:
	File string `toml:"file"` // path relative to the recipe's folder
	URL  string `toml:"url"`  // https URL
	Deb  string `toml:"deb"`  // a .deb (file path relative to recipe, or URL); Path selects the member
	OCI  string `toml:"oci"`  // registry/repo@sha256:... ; Path selects a file in a layer, or Layer selects a layer digest
	Path string `toml:"path"` // member path inside the deb / image
	// Layer selects one layer of an OCI image or artifact by digest
	// ("sha256:..."); the input is that layer blob as stored.
	Layer string `toml:"layer"`
	// Package and Version name the Debian package a deb came from, for
	// `mkcvm lock` to re-resolve pins.
	Package string `toml:"package"`
	Version string `toml:"version"`
}

// InitrdSpec describes the u-root initramfs.
type InitrdSpec struct {
	Compression string       `toml:"compression"` // none, gzip, zstd
	Commands    []string     `toml:"commands"`    // u-root command packages, e.g. "github.com/u-root/u-root/cmds/core/ls"
	Files       []InitrdFile `toml:"file"`
	Workload    *Workload    `toml:"workload"`
	// Init is the Go package built as /init (default DefaultInit).
	Init string `toml:"init"`
}

// InitrdFile is one extra file placed in the initramfs with an explicit mode.
type InitrdFile struct {
	Path     string `toml:"path"`     // path inside the initramfs
	Input    string `toml:"input"`    // key of Inputs, or
	Contents string `toml:"contents"` // inline contents
	Mode     string `toml:"mode"`     // octal, e.g. "0644"
}

// Workload names the container the runner starts (by digest only).
type Workload struct {
	Image string   `toml:"image"` // registry/repo@sha256:...
	Args  []string `toml:"args"`
	Env   []string `toml:"env"`
	// Config is the sha256:<hex> digest of the image's config blob. The
	// workload PCR/RTMR prediction needs it (measure.PredictWorkload); the
	// runner refuses an image whose config differs (mkcvm.config).
	Config string `toml:"config"`
}

// Shape is one VM shape whose reference values are computed.
type Shape struct {
	Name          string `toml:"name"`
	Platform      string `toml:"platform"` // snp, seves, sev, tdx, tpm
	VCPUs         int    `toml:"vcpus"`
	VCPUType      string `toml:"vcpu_type"`      // named model (EPYC-v4, ...), SNP
	VCPUSig       string `toml:"vcpu_sig"`       // hex signature, SNP (alternative to VCPUType)
	VMM           string `toml:"vmm"`            // qemu, ec2, gce
	VMMVersion    string `toml:"vmm_version"`    // e.g. "7.2"
	Machine       string `toml:"machine"`        // e.g. "q35"
	MemoryMiB     int    `toml:"memory_mib"`     //
	GuestFeatures string `toml:"guest_features"` // hex, SNP (e.g. "0x1")
	Policy        string `toml:"policy"`         // hex guest policy, SNP
	PageOrder     string `toml:"page_order"`     // TDX: single | two-pass
	Profile       string `toml:"profile"`        // key of Inputs: captured platform profile (TPM/TDX)
}
