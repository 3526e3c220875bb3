package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// grubModuleDir is where Debian's grub-efi-amd64-bin installs the
// x86_64-efi modules grub-mkimage links into grub.efi.
const grubModuleDir = "/usr/lib/grub/x86_64-efi"

// grubFixedTime is the mtime given to grub.cfg (and so to its entry in the
// FAT memdisk) and, plus one hour, to grub.efi. 1980-01-01 is the FAT epoch.
var grubFixedTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// makeGrub generates the grub.efi that AmdSevX64 embeds, in place of the
// platform's PREBUILD script (OvmfPkg/AmdSev/Grub/grub.sh), which is not
// reproducible: it formats the memdisk with a time-based volume id and
// copies grub.cfg with the current time. The steps are grub.sh's with
// those two fixed (mkfs.msdos --invariant, mcopy -m on a fixed mtime), the
// modules from the recipe, and grub-mkimage from the pinned Debian
// packages. grub.efi is then made newer than grub.sh and grub.cfg, which
// makes grub.sh keep it when the edk2 build runs it as PREBUILD.
func (b *fwBuild) makeGrub(ctx context.Context, rel string) (string, error) {
	dir := filepath.Join(b.tree, filepath.FromSlash(rel))
	run := func(name string, args ...string) error {
		if err := buildCmd(ctx, dir, b.env, b.logw, name, args...).Run(); err != nil {
			return fmt.Errorf("generating grub.efi: %s: %w", name, err)
		}
		return nil
	}
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.Chtimes(cfg, grubFixedTime, grubFixedTime); err != nil {
		return "", fmt.Errorf("generating grub.efi: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "grub-bootstrap.cfg"), []byte("normal (memdisk)/grub.cfg\n"), 0o644); err != nil {
		return "", err
	}
	if err := run("mkfs.msdos", "--invariant", "-C", "disk.fat", "64"); err != nil {
		return "", err
	}
	if err := run("mcopy", "-m", "-i", "disk.fat", "grub.cfg", "::grub.cfg"); err != nil {
		return "", err
	}
	args := append([]string{"-d", grubModuleDir, "-O", "x86_64-efi", "-p", "(crypto0)",
		"-c", "grub-bootstrap.cfg", "-m", "disk.fat", "-o", "grub.efi"}, b.src.GrubModules...)
	if err := run("grub-mkimage", args...); err != nil {
		return "", err
	}
	for _, f := range []string{"disk.fat", "grub-bootstrap.cfg"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			return "", err
		}
	}
	for _, f := range []string{"grub.sh", "grub.cfg"} {
		if err := os.Chtimes(filepath.Join(dir, f), grubFixedTime, grubFixedTime); err != nil {
			return "", err
		}
	}
	efi := filepath.Join(dir, "grub.efi")
	later := grubFixedTime.Add(time.Hour)
	if err := os.Chtimes(efi, later, later); err != nil {
		return "", err
	}
	img, err := os.ReadFile(efi)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(img)
	return hex.EncodeToString(sum[:]), nil
}
