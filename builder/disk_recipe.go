package builder

import (
	"context"
	"fmt"
	"strconv"

	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/uki"
)

// DiskSpec is the recipe's [disk] section: a GPT disk whose EFI system
// partition holds EFI/BOOT/BOOTX64.EFI, a unified kernel image built from
// the recipe's kernel, initrd and cmdline around the systemd EFI stub.
// Every identifier is fixed here so the image is reproducible.
type DiskSpec struct {
	Stub         string          `toml:"stub"`          // key of Inputs: systemd-boot-efi linuxx64.efi.stub
	OSRelease    string          `toml:"os_release"`    // contents of .osrel (default "ID=mkcvm\n")
	Uname        string          `toml:"uname"`         // contents of .uname (optional)
	SizeMiB      int             `toml:"size_mib"`      // whole disk (default: fits the UKI, at least 64)
	DiskGUID     string          `toml:"disk_guid"`     // GPT disk GUID
	ESPGUID      string          `toml:"esp_guid"`      // GPT unique partition GUID of the ESP
	ESPName      string          `toml:"esp_name"`      // GPT partition name (default "EFI System Partition")
	VolumeLabel  string          `toml:"volume_label"`  // FAT label (default "ESP")
	VolumeSerial string          `toml:"volume_serial"` // FAT serial, 8 hex digits
	SecureBoot   *SecureBootSpec `toml:"secure_boot"`
}

// SecureBootSpec signs the UKI and enrols the signer in a VARS store.
type SecureBootSpec struct {
	Key          string `toml:"key"`           // key of Inputs: PEM RSA key that signs the UKI
	Cert         string `toml:"cert"`          // key of Inputs: its certificate, enrolled in db
	PKCert       string `toml:"pk_cert"`       // key of Inputs: PK certificate (default: cert)
	KEKCert      string `toml:"kek_cert"`      // key of Inputs: KEK certificate (default: cert)
	Owner        string `toml:"owner_guid"`    // EFI_SIGNATURE_DATA.SignatureOwner
	VarsTemplate string `toml:"vars_template"` // key of Inputs: OVMF VARS template (OVMF_VARS_4M.fd)
}

// DiskInputs are the resolved bytes BuildDisk assembles.
type DiskInputs struct {
	Kernel, Initrd []byte
	Cmdline        string
	Epoch          int64
	Inputs         map[string][]byte // every recipe input by name
}

// DiskArtifacts is what BuildDisk produces.
type DiskArtifacts struct {
	Image  []byte          // raw GPT disk
	UKI    []byte          // EFI/BOOT/BOOTX64.EFI (signed when Secure Boot is on)
	Vars   []byte          // enrolled VARS store (Secure Boot only)
	SB     *SecureBootVars // enrolled PK/KEK/db payloads (Secure Boot only)
	Signer *SBSigner       // Secure Boot only
	// Authority is the EFI_SIGNATURE_DATA (owner GUID, certificate) of the
	// db entry that verifies the UKI (Secure Boot only).
	Authority []byte
	Sections  []uki.Section // the sections added to the stub, in order
	Layout    DiskLayout
}

// ESPBootPath is where the UKI is placed: the removable-media default boot
// path for x86-64 (UEFI 2.10 §3.5.1.1).
const ESPBootPath = "EFI/BOOT/BOOTX64.EFI"

// BuildDisk assembles the UKI, signs it and enrols its signer when Secure
// Boot is requested, and lays out the disk. It returns nothing on error.
func BuildDisk(ctx context.Context, spec *DiskSpec, in DiskInputs) (*DiskArtifacts, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	input := func(field, key string) ([]byte, error) {
		b, ok := in.Inputs[key]
		if !ok {
			return nil, fmt.Errorf("disk %s: input %q not in the recipe", field, key)
		}
		return b, nil
	}
	stub, err := input("stub", spec.Stub)
	if err != nil {
		return nil, err
	}
	secs := spec.sections(in)
	img, err := uki.Assemble(spec.Stub, stub, secs)
	if err != nil {
		return nil, fmt.Errorf("assembling UKI: %w", err)
	}
	art := &DiskArtifacts{UKI: img, Sections: secs}
	if sb := spec.SecureBoot; sb != nil {
		if err := art.secureBoot(sb, input, in.Epoch); err != nil {
			return nil, err
		}
	}
	if art.Layout, err = spec.layout(len(art.UKI), in.Epoch); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if art.Image, err = BuildESPDisk(art.Layout, []ESPFile{{Path: ESPBootPath, Data: art.UKI}}); err != nil {
		return nil, fmt.Errorf("building disk: %w", err)
	}
	return art, nil
}

func (spec *DiskSpec) sections(in DiskInputs) []uki.Section {
	osrel := spec.OSRelease
	if osrel == "" {
		osrel = "ID=mkcvm\n"
	}
	secs := []uki.Section{{Name: uki.SectionOSRel, Data: []byte(osrel)}}
	if in.Cmdline != "" {
		secs = append(secs, uki.Section{Name: uki.SectionCmdline, Data: []byte(in.Cmdline)})
	}
	if spec.Uname != "" {
		secs = append(secs, uki.Section{Name: uki.SectionUname, Data: []byte(spec.Uname)})
	}
	if len(in.Initrd) > 0 {
		secs = append(secs, uki.Section{Name: uki.SectionInitrd, Data: in.Initrd})
	}
	return append(secs, uki.Section{Name: uki.SectionLinux, Data: in.Kernel})
}

func (a *DiskArtifacts) secureBoot(sb *SecureBootSpec, input func(string, string) ([]byte, error), epoch int64) error {
	key, err := input("secure_boot.key", sb.Key)
	if err != nil {
		return err
	}
	certb, err := input("secure_boot.cert", sb.Cert)
	if err != nil {
		return err
	}
	if a.Signer, err = ParseSBSigner(sb.Key, key, sb.Cert, certb); err != nil {
		return err
	}
	owner, err := ovmf.ParseGUID(sb.Owner)
	if err != nil {
		return fmt.Errorf("disk secure_boot.owner_guid %q: %w", sb.Owner, err)
	}
	a.SB = &SecureBootVars{DB: X509SignatureList(owner, a.Signer.Cert)}
	a.Authority = append(owner[:], a.Signer.Cert.Raw...)
	for _, c := range []struct {
		field, key string
		out        *[]byte
	}{{"secure_boot.pk_cert", sb.PKCert, &a.SB.PK}, {"secure_boot.kek_cert", sb.KEKCert, &a.SB.KEK}} {
		cert := a.Signer.Cert
		if c.key != "" {
			b, err := input(c.field, c.key)
			if err != nil {
				return err
			}
			if cert, err = parseCert(c.key, b); err != nil {
				return err
			}
		}
		*c.out = X509SignatureList(owner, cert)
	}
	tmpl, err := input("secure_boot.vars_template", sb.VarsTemplate)
	if err != nil {
		return err
	}
	if a.Vars, err = EnrollSecureBoot(sb.VarsTemplate, tmpl, *a.SB, epoch); err != nil {
		return fmt.Errorf("enrolling Secure Boot keys: %w", err)
	}
	if a.UKI, err = a.Signer.SignPE(a.UKI); err != nil {
		return fmt.Errorf("signing UKI: %w", err)
	}
	return nil
}

// layout applies defaults to the recipe's disk identifiers.
func (spec *DiskSpec) layout(ukiSize int, epoch int64) (DiskLayout, error) {
	l := DiskLayout{
		SizeMiB: spec.SizeMiB, DiskGUID: spec.DiskGUID, ESPGUID: spec.ESPGUID,
		ESPName: spec.ESPName, VolumeLabel: spec.VolumeLabel, Epoch: epoch,
	}
	if l.ESPName == "" {
		l.ESPName = "EFI System Partition"
	}
	if l.VolumeLabel == "" {
		l.VolumeLabel = "ESP"
	}
	// ESP: twice the UKI plus 8 MiB of FAT metadata and slack, at least 64 MiB.
	need := max(64, (2*ukiSize>>20)+8+2)
	if l.SizeMiB == 0 {
		l.SizeMiB = need
	}
	if spec.VolumeSerial != "" {
		v, err := strconv.ParseUint(spec.VolumeSerial, 16, 32)
		if err != nil {
			return l, fmt.Errorf("disk volume_serial %q: want 8 hex digits: %w", spec.VolumeSerial, err)
		}
		l.VolumeSerial = uint32(v)
	}
	return l, nil
}

// UKIOptions are the inputs of a standalone UKI (mkcvm disk uki).
type UKIOptions struct {
	StubName         string // names the stub in errors
	Stub, Kernel     []byte
	Initrd           []byte // optional
	Cmdline          string // optional
	OSRelease, Uname string // .osrel (default "ID=mkcvm\n"), .uname (optional)
	Signer           *SBSigner
}

// MakeUKI assembles (and, with a signer, signs) a UKI exactly as BuildDisk
// does for the ESP.
func MakeUKI(o UKIOptions) ([]byte, error) {
	spec := &DiskSpec{OSRelease: o.OSRelease, Uname: o.Uname}
	img, err := uki.Assemble(o.StubName, o.Stub, spec.sections(DiskInputs{Kernel: o.Kernel, Initrd: o.Initrd, Cmdline: o.Cmdline}))
	if err != nil {
		return nil, fmt.Errorf("assembling UKI: %w", err)
	}
	if o.Signer == nil {
		return img, nil
	}
	return o.Signer.SignPE(img)
}
