package builder

import (
	"context"
	"fmt"
	"regexp"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/ovmf"
)

// Output names of the disk artifacts.
const (
	DiskImageFile = "disk.img"
	UKIFile       = "BOOTX64.EFI"
	DiskVarsFile  = "OVMF_VARS.enrolled.fd"
)

// DiskPlatform is the shape platform whose vTPM PCRs are predicted for
// booting the recipe's disk (instead of a direct kernel boot).
const DiskPlatform = "tpm-disk"

func init() {
	artifactHooks = append(artifactHooks, diskArtifactHook)
	registerValues(DiskPlatform, diskValues)
}

// diskArtifactHook builds the disk when the recipe has a [disk] section and
// keeps it in in.Disk for the tpm-disk shapes.
func diskArtifactHook(ctx context.Context, r *Recipe, in *MeasureInputs) ([]ExtraArtifact, error) {
	if r.Disk == nil {
		return nil, nil
	}
	art, err := BuildDisk(ctx, r.Disk, DiskInputs{Kernel: in.Kernel, Initrd: in.Initrd, Cmdline: in.Cmdline, Epoch: r.Epoch, Inputs: in.Inputs})
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	in.Disk = art
	out := []ExtraArtifact{{Name: DiskImageFile, Role: "disk", Data: art.Image}, {Name: UKIFile, Role: "uki", Data: art.UKI}}
	if art.Vars != nil {
		out = append(out, ExtraArtifact{Name: DiskVarsFile, Role: "vars", Data: art.Vars})
	}
	return out, nil
}

// diskValues predicts the vTPM PCRs of booting the recipe's disk with the
// recipe's OVMF CODE (OVMF_CODE_4M.secboot.fd for Secure Boot) and the
// enrolled VARS (or the recipe's VARS template without Secure Boot).
func diskValues(in *MeasureInputs, s Shape, out *manifest.Shape) error {
	if in.Disk == nil {
		return fmt.Errorf("platform %s needs a [disk] section", DiskPlatform)
	}
	req := DiskRequest{Code: in.FirmwareCode, Art: in.Disk, VarsTemplate: in.FirmwareVars,
		Machine: s.Machine, MemoryMiB: s.MemoryMiB, VCPUs: s.VCPUs}
	if s.Profile != "" {
		b, ok := in.Inputs[s.Profile]
		if !ok {
			return fmt.Errorf("profile input %q not found", s.Profile)
		}
		req.ProfileName, req.Profile = s.Profile, b
	}
	p, err := PredictDisk(req)
	if err != nil {
		return err
	}
	// The manifest records a vTPM shape: verifiers compare PCRs the same
	// way for either boot path; the note says it is the disk boot.
	out.Platform = "tpm"
	out.TPM = TPMValues(p)
	if np := p.NotPinnedPCRs(); len(np) > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("PCRs %v not pinned: %s", np, p.Why[np[0]]))
	}
	out.Notes = append(out.Notes, "disk boot: vTPM values assume QEMU 7.2 booting disk.img as the only boot device (virtio-blk at 00:01.0 with bootindex), -net none, the UKI's systemd 252 stub")
	return nil
}

func init() {
	ShapePlatforms = append(ShapePlatforms, DiskPlatform)
	recipeChecks = append(recipeChecks, checkDisk)
}

// checkDisk validates the recipe's [disk] section without building it.
func checkDisk(r *Recipe) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &RecipeError{Where: "disk", Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	needsDisk := false
	for _, s := range r.Shapes {
		needsDisk = needsDisk || s.Platform == DiskPlatform
	}
	d := r.Disk
	if d == nil {
		if needsDisk {
			bad("", "platform %s shapes need a [disk] section", DiskPlatform)
		}
		return errs
	}
	input := func(field, key string, required bool) {
		if key == "" {
			if required {
				bad(field, "required")
			}
			return
		}
		if _, ok := r.Inputs[key]; !ok {
			bad(field, "names no input: %q", key)
		}
	}
	input("stub", d.Stub, true)
	for field, g := range map[string]string{"disk_guid": d.DiskGUID, "esp_guid": d.ESPGUID} {
		if _, err := ovmf.ParseGUID(g); err != nil {
			bad(field, "must be a GUID such as 8c3e1d7a-1f0b-4a52-9d53-3b1b6f7c2a10, got %q", g)
		}
	}
	if len(d.VolumeLabel) > 11 {
		bad("volume_label", "at most 11 characters, got %q", d.VolumeLabel)
	}
	if d.VolumeSerial != "" && !volumeSerialRE.MatchString(d.VolumeSerial) {
		bad("volume_serial", "must be 8 hex digits, got %q", d.VolumeSerial)
	}
	if d.SizeMiB != 0 && d.SizeMiB < minESPSizeMiB+2 {
		bad("size_mib", "must be 0 (fit the UKI) or at least %d, got %d", minESPSizeMiB+2, d.SizeMiB)
	}
	if r.Epoch < fatEpoch {
		bad("", "epoch %d is before 1980-01-01 (%d), which FAT timestamps cannot encode", r.Epoch, fatEpoch)
	}
	if sb := d.SecureBoot; sb != nil {
		input("secure_boot.key", sb.Key, true)
		input("secure_boot.cert", sb.Cert, true)
		input("secure_boot.pk_cert", sb.PKCert, false)
		input("secure_boot.kek_cert", sb.KEKCert, false)
		input("secure_boot.vars_template", sb.VarsTemplate, true)
		if _, err := ovmf.ParseGUID(sb.Owner); err != nil {
			bad("secure_boot.owner_guid", "must be a GUID, got %q", sb.Owner)
		}
	}
	return errs
}

var volumeSerialRE = regexp.MustCompile(`^[0-9a-fA-F]{8}$`)
