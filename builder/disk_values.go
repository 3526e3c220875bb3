package builder

import (
	"errors"

	"github.com/mkcvm/mkcvm/measure"
)

// DiskRequest are the inputs of a vTPM PCR prediction for a QEMU + OVMF
// boot from the disk BuildDisk made.
type DiskRequest struct {
	Code []byte         // OVMF CODE pflash image (Secure Boot capable when Art.Vars is set)
	Art  *DiskArtifacts // from BuildDisk
	// VarsTemplate is the VARS image used when Art carries no enrolled
	// store (Secure Boot off).
	VarsTemplate []byte
	// DiskPCI is the virtio-blk disk's PCI slot; the zero value means
	// 00:01.0, where QEMU puts the first device of a -nodefaults q35 VM.
	DiskPCI *measure.PCIAddress
	Machine string // default "q35"
	// MemoryMiB and VCPUs default to 1024 and 1.
	MemoryMiB, VCPUs int
	ProfileName      string
	Profile          []byte // captured platform profile (JSON), pins PCR 0
	Banks            []measure.HashAlg
}

// PredictDisk predicts the event log and PCRs 0-7, 9 and 11-13 of booting
// the disk. Convert with TPMValues for the manifest.
func PredictDisk(req DiskRequest) (*measure.Prediction, error) {
	if req.Code == nil || req.Art == nil {
		return nil, errors.New("disk PCR prediction needs the OVMF CODE image and the built disk")
	}
	vars := req.Art.Vars
	if vars == nil {
		vars = req.VarsTemplate
	}
	if vars == nil {
		return nil, errors.New("disk PCR prediction needs a VARS image")
	}
	fw, err := analyzeOVMF(req.Code)
	if err != nil {
		return nil, err
	}
	shell, err := measure.OVMFHasShell("OVMF CODE", req.Code)
	if err != nil {
		return nil, err
	}
	in := &measure.DiskBoot{
		Firmware: fw, Vars: vars, Disk: req.Art.Image, UKI: req.Art.UKI, Authority: req.Art.Authority,
		DiskPCI: measure.PCIAddress{Device: 1}, Shell: shell, Machine: req.Machine,
		MemoryMiB: req.MemoryMiB, VCPUs: req.VCPUs, Algs: req.Banks,
	}
	if req.DiskPCI != nil {
		in.DiskPCI = *req.DiskPCI
	}
	if in.Machine == "" {
		in.Machine = "q35"
	}
	if in.MemoryMiB == 0 {
		in.MemoryMiB = 1024
	}
	if in.VCPUs == 0 {
		in.VCPUs = 1
	}
	for _, s := range req.Art.Sections {
		in.Sections = append(in.Sections, measure.UKISection{Name: s.Name, Data: s.Data})
	}
	if req.Profile != nil {
		if in.Profile, err = measure.ParseProfile(req.ProfileName, req.Profile); err != nil {
			return nil, err
		}
	}
	return measure.PredictDiskBoot(in)
}
