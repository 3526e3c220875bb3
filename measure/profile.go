package measure

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// ProfileSchema identifies the captured platform profile format.
const ProfileSchema = "mkcvm.dev/tpm-profile/v1"

// Profile is a captured platform profile: what one real boot of a VM shape
// (QEMU + OVMF + swtpm) recorded, for the measurements that depend on the
// shape rather than on files mkcvm builds (PCR 0's PEI firmware volume, which
// OVMF hashes after PEI ran in it). `mkcvm capture` writes it; the predictor
// takes only the shape-dependent events from it and computes the rest.
type Profile struct {
	Schema string `json:"schema"`
	// QEMUVersion is the first line of `qemu-system-x86_64 --version`.
	QEMUVersion string `json:"qemu_version"`
	// SwtpmVersion is the first line of `swtpm --version`.
	SwtpmVersion string `json:"swtpm_version,omitempty"`
	// OVMFVersion names the firmware build (e.g. the Debian package version).
	OVMFVersion    string `json:"ovmf_version,omitempty"`
	OVMFCodeSHA256 string `json:"ovmf_code_sha256"`
	OVMFVarsSHA256 string `json:"ovmf_vars_sha256"`
	Machine        string `json:"machine"`
	MemoryMiB      int    `json:"memory_mib"`
	VCPUs          int    `json:"vcpus"`
	// Devices lists the QEMU arguments that add devices (TPM, network,
	// disks), in command-line order.
	Devices []string `json:"devices"`
	// The boot inputs of the capture run.
	KernelSHA256 string `json:"kernel_sha256"`
	InitrdSHA256 string `json:"initrd_sha256,omitempty"`
	InitrdSize   int64  `json:"initrd_size"`
	Cmdline      string `json:"cmdline"`
	// EventLog is the firmware event log the guest read from
	// /sys/kernel/security/tpm0/binary_bios_measurements.
	EventLog []byte `json:"event_log"`
	// PCRs maps bank to PCR index (decimal) to lowercase hex, as read in the
	// guest after boot.
	PCRs map[string]map[string]string `json:"pcrs"`

	log *EventLog
}

// ParseProfile decodes and checks a profile: known schema, no unknown
// fields, a parseable event log whose replay equals the recorded PCRs.
func ParseProfile(input string, b []byte) (*Profile, error) {
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile %s: %w", input, err)
	}
	if p.Schema != ProfileSchema {
		return nil, fmt.Errorf("profile %s: schema %q, want %q", input, p.Schema, ProfileSchema)
	}
	if p.Machine == "" || p.MemoryMiB <= 0 || p.VCPUs <= 0 {
		return nil, fmt.Errorf("profile %s: machine, memory_mib and vcpus are required", input)
	}
	l, err := ParseEventLog(input+": event_log", p.EventLog)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", input, err)
	}
	p.log = l
	for bank, vals := range p.PCRs {
		alg, err := ParseHashAlg(bank)
		if err != nil {
			return nil, fmt.Errorf("profile %s: pcrs: %w", input, err)
		}
		want, err := parsePCRMap(vals)
		if err != nil {
			return nil, fmt.Errorf("profile %s: pcrs.%s: %w", input, bank, err)
		}
		for pcr := range want {
			if pcr > 9 { // PCR 10 and up are extended by the OS, not the firmware log
				delete(want, pcr)
			}
		}
		if err := l.VerifyReplay(alg, want); err != nil {
			return nil, fmt.Errorf("profile %s: event log does not replay to the recorded PCRs: %w", input, err)
		}
	}
	return &p, nil
}

// Log returns the profile's parsed event log.
func (p *Profile) Log() *EventLog { return p.log }

// Marshal encodes the profile as indented JSON with a trailing newline (map
// keys sorted by encoding/json, so the bytes are canonical).
func (p *Profile) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func parsePCRMap(m map[string]string) (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	for k, v := range m {
		n, err := strconv.ParseUint(k, 10, 8)
		if err != nil || n > 23 {
			return nil, fmt.Errorf("PCR index %q: want 0..23", k)
		}
		b, err := decodeHexString(v)
		if err != nil {
			return nil, fmt.Errorf("PCR%d: %w", n, err)
		}
		out[uint32(n)] = b
	}
	return out, nil
}
