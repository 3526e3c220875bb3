package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Artifact names of a firmware built from source.
const (
	// FirmwareImageFile is the built image in the bundle (role "firmware").
	FirmwareImageFile = "OVMF.fd"
	// FirmwareBuildFile is its build record (role "firmware-build"): source
	// digests, patches, toolchain, flags, environment and command.
	FirmwareBuildFile = "firmware-build.json"
)

type firmwareOptionsKey struct{}

// WithFirmwareOptions makes Build use opts for a recipe's
// [firmware.source] (source and cache directories, jobs, logging).
// Without it Build reads MKCVM_SRCDIR and MKCVM_FIRMWARE_CACHE (default:
// DefaultFirmwareCacheDir).
func WithFirmwareOptions(ctx context.Context, opts FirmwareOptions) context.Context {
	return context.WithValue(ctx, firmwareOptionsKey{}, opts)
}

func init() { artifactHooks = append(artifactHooks, firmwareFromSource) }

// firmwareFromSource is Build's step for [firmware.source]: it builds the
// image (a cache hit when built before), makes it the firmware the shapes
// are measured with and adds it and its build record to the bundle.
func firmwareFromSource(ctx context.Context, r *Recipe, in *MeasureInputs) ([]ExtraArtifact, error) {
	if r.Firmware.Source == nil {
		return nil, nil
	}
	opts, ok := ctx.Value(firmwareOptionsKey{}).(FirmwareOptions)
	if !ok {
		opts = FirmwareOptions{SourceDir: os.Getenv("MKCVM_SRCDIR"), CacheDir: os.Getenv("MKCVM_FIRMWARE_CACHE")}
	}
	if opts.SourceDir == "" {
		return nil, errors.New("firmware from source: no source directory (set MKCVM_SRCDIR to the folder with the edk2 .dsc and tarballs; `make firmware-src` downloads them)")
	}
	if opts.CacheDir == "" {
		d, err := DefaultFirmwareCacheDir()
		if err != nil {
			return nil, err
		}
		opts.CacheDir = d
	}
	img, rec, err := RecipeFirmware(ctx, r, in.Inputs, opts)
	if err != nil {
		return nil, err
	}
	recJSON, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	in.Firmware = img
	return []ExtraArtifact{
		{Name: FirmwareImageFile, Role: "firmware", Data: img},
		{Name: FirmwareBuildFile, Role: "firmware-build", Data: append(recJSON, '\n')},
	}, nil
}

// ReadPatchInputs reads the patch inputs of r's [firmware.source] from the
// recipe folder root and checks each against its pinned sha256 and size.
func ReadPatchInputs(root *os.Root, r *Recipe) (map[string][]byte, error) {
	out := map[string][]byte{}
	if r.Firmware.Source == nil {
		return out, nil
	}
	for _, name := range r.Firmware.Source.Patches {
		in := r.Inputs[name]
		b, err := root.ReadFile(in.File)
		if err != nil {
			return nil, fmt.Errorf("patch input %q: %w", name, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != in.SHA256 || int64(len(b)) != in.Size {
			return nil, fmt.Errorf("%w: patch input %q (%s): got sha256 %s size %d, recipe pins sha256 %s size %d",
				ErrSourceDigest, name, in.File, got, len(b), in.SHA256, in.Size)
		}
		out[name] = b
	}
	return out, nil
}
