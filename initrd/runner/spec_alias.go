package runner

import "github.com/mkcvm/mkcvm/initrd/runner/spec"

// The configuration and evidence formats live in package spec so that the
// builder and verifiers can use them without the runner's device code.
type (
	Config           = spec.Config
	Action           = spec.Action
	Evidence         = spec.Evidence
	PCRValue         = spec.PCRValue
	EvidenceResponse = spec.EvidenceResponse
	ReadableEvent    = spec.ReadableEvent
)

// Configuration constants, see package spec.
const (
	ConfigFile     = spec.ConfigFile
	ActionPoweroff = spec.ActionPoweroff
	ActionReboot   = spec.ActionReboot
	ActionHold     = spec.ActionHold
)

// ErrConfig marks configuration errors.
var ErrConfig = spec.ErrConfig

// ParseConfig parses the configuration file text and the kernel command
// line; see spec.ParseConfig.
func ParseConfig(file, cmdline string) (*Config, error) { return spec.ParseConfig(file, cmdline) }

// DefaultConfig returns the configuration with every default set.
func DefaultConfig() *Config { return spec.DefaultConfig() }
