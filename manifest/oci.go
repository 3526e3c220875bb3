package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI media types of a published bundle (OCI image-spec v1.1 artifact
// guidance, https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md).
const (
	// ArtifactTypeBundle is the artifactType (and config media type) of the
	// OCI manifest holding the bundle's artifacts as layers.
	ArtifactTypeBundle = "application/vnd.mkcvm.bundle.v1"
	// MediaTypeSigstoreBundle is the artifactType, config media type and
	// layer media type of the signed-manifest referrer, as cosign expects.
	MediaTypeSigstoreBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// AnnotationPredicateType is set on the referrer so cosign can filter
	// attestations by predicate type.
	AnnotationPredicateType = "dev.sigstore.bundle.predicateType"
	// AnnotationTitle names a layer's file (OCI pre-defined annotation).
	AnnotationTitle = "org.opencontainers.image.title"
	// AnnotationRole gives a layer's artifact role.
	AnnotationRole = "dev.mkcvm.role"
)

// emptyConfig is the two-byte JSON object used as every config blob.
var emptyConfig = []byte("{}")

// LayerMediaType is the media type of an artifact layer of the given role.
func LayerMediaType(role string) types.MediaType {
	return types.MediaType("application/vnd.mkcvm." + role + ".v1")
}

func configDescriptor(mediaType string) v1.Descriptor {
	s := sha256.Sum256(emptyConfig)
	return v1.Descriptor{
		MediaType: types.MediaType(mediaType),
		Size:      int64(len(emptyConfig)),
		Digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])},
	}
}

// BundleOCIManifest returns the OCI image manifest that publishes m's
// artifacts, and its descriptor. It depends on m alone (artifact names,
// roles, digests and sizes), so the digest is known before publishing and
// is signed as a statement subject.
func BundleOCIManifest(m *Manifest) ([]byte, v1.Descriptor, error) {
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        configDescriptor(ArtifactTypeBundle),
		Annotations:   map[string]string{"dev.mkcvm.recipe": m.Recipe.Name},
	}
	for _, a := range m.Artifacts {
		h, err := v1.NewHash("sha256:" + a.SHA256)
		if err != nil {
			return nil, v1.Descriptor{}, fmt.Errorf("artifact %q: %w", a.Name, err)
		}
		mf.Layers = append(mf.Layers, v1.Descriptor{
			MediaType: LayerMediaType(a.Role), Size: a.Size, Digest: h,
			Annotations: map[string]string{AnnotationTitle: a.Name, AnnotationRole: a.Role},
		})
	}
	return encodeOCI(mf, ArtifactTypeBundle)
}

// ReferrerOCIManifest returns the OCI manifest that attaches a signed
// manifest bundle (bundleJSON, one layer) to subject.
func ReferrerOCIManifest(bundleJSON []byte, subject v1.Descriptor) ([]byte, v1.Descriptor, error) {
	s := sha256.Sum256(bundleJSON)
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        configDescriptor(MediaTypeSigstoreBundle),
		Layers: []v1.Descriptor{{
			MediaType: MediaTypeSigstoreBundle, Size: int64(len(bundleJSON)),
			Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])},
		}},
		Subject:     &v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest},
		Annotations: map[string]string{AnnotationPredicateType: PredicateType},
	}
	return encodeOCI(mf, MediaTypeSigstoreBundle)
}

// encodeOCI marshals an image manifest (struct field order, sorted
// annotation keys, no HTML escaping) and returns it with its descriptor.
func encodeOCI(mf v1.Manifest, artifactType string) ([]byte, v1.Descriptor, error) {
	mf.ArtifactType = artifactType
	if mf.Layers == nil {
		mf.Layers = []v1.Descriptor{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(mf); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("encoding OCI manifest: %w", err)
	}
	raw := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	s := sha256.Sum256(raw)
	return raw, v1.Descriptor{
		MediaType: types.OCIManifestSchema1, Size: int64(len(raw)),
		Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}, ArtifactType: artifactType,
	}, nil
}
