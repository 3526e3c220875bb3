package manifest

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Publisher pushes a built bundle and its signed manifest.
type Publisher interface {
	Publish(ctx context.Context, src fs.FS, signed []byte, ref string) (*Published, error)
}

// Published describes what Publish wrote.
type Published struct {
	// Bundle is the digest reference of the artifact manifest.
	Bundle name.Digest
	// Signature is the digest reference of the signed-manifest referrer.
	Signature name.Digest
}

// OCIRegistry publishes to and fetches from an OCI registry with
// go-containerregistry. The signed manifest is a referrer of the bundle
// (OCI 1.1 subject); on registries without the referrers API, ggcr
// maintains the sha256-<hex> fallback tag.
type OCIRegistry struct {
	// Remote are ggcr options (transport, auth, platform). Nil is fine.
	Remote []remote.Option
	// Name are options for parsing references, e.g. name.Insecure for
	// plain-HTTP registries.
	Name []name.Option
	// Log receives progress; nil discards.
	Log *slog.Logger
}

var _ Publisher = (*OCIRegistry)(nil)

func (r *OCIRegistry) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// rawImage is a v1.Image from raw manifest bytes and blobs by digest.
type rawImage struct {
	manifest []byte
	layers   map[v1.Hash]partial.CompressedLayer
}

func (i *rawImage) RawConfigFile() ([]byte, error)      { return emptyConfig, nil }
func (i *rawImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i *rawImage) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *rawImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	if c := configDescriptor(""); h == c.Digest {
		return &bytesLayer{b: emptyConfig, mt: types.OCIManifestSchema1}, nil
	}
	return nil, fmt.Errorf("blob %s not in image", h)
}

// bytesLayer is an in-memory blob.
type bytesLayer struct {
	b  []byte
	mt types.MediaType
}

func (l *bytesLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.b))
	return h, err
}
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// fileLayer streams an artifact file whose digest the manifest pins; the
// registry rejects the upload if the bytes differ.
type fileLayer struct {
	fsys fs.FS
	a    Artifact
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return v1.NewHash("sha256:" + l.a.SHA256) }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return l.fsys.Open(l.a.Name) }
func (l *fileLayer) Size() (int64, error)                { return l.a.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return LayerMediaType(l.a.Role), nil }

// Publish checks the artifacts in src against the signed manifest, pushes
// them as one OCI artifact tagged ref, then pushes the signed manifest as
// its referrer.
func (r *OCIRegistry) Publish(ctx context.Context, src fs.FS, signed []byte, ref string) (*Published, error) {
	s, err := ParseBundle(signed)
	if err != nil {
		return nil, err
	}
	if err := CheckArtifacts(src, s.Manifest); err != nil {
		return nil, err
	}
	tag, err := name.ParseReference(ref, r.Name...)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	raw, desc, err := BundleOCIManifest(s.Manifest)
	if err != nil {
		return nil, err
	}
	img := &rawImage{manifest: raw, layers: map[v1.Hash]partial.CompressedLayer{}}
	for _, a := range s.Manifest.Artifacts {
		h, _ := v1.NewHash("sha256:" + a.SHA256)
		img.layers[h] = &fileLayer{fsys: src, a: a}
	}
	opts := append([]remote.Option{remote.WithContext(ctx)}, r.Remote...)
	bundleImg, err := partial.CompressedToImage(img)
	if err != nil {
		return nil, err
	}
	r.log().Info("pushing bundle", "ref", tag.String(), "digest", desc.Digest.String(), "layers", len(s.Manifest.Artifacts))
	if err := remote.Write(tag, bundleImg, opts...); err != nil {
		return nil, fmt.Errorf("pushing bundle to %s: %w", tag, err)
	}
	rraw, rdesc, err := ReferrerOCIManifest(signed, desc)
	if err != nil {
		return nil, err
	}
	bh, _, _ := v1.SHA256(bytes.NewReader(signed))
	sigImg, err := partial.CompressedToImage(&rawImage{manifest: rraw, layers: map[v1.Hash]partial.CompressedLayer{
		bh: &bytesLayer{b: signed, mt: MediaTypeSigstoreBundle},
	}})
	if err != nil {
		return nil, err
	}
	sigRef := tag.Context().Digest(rdesc.Digest.String())
	r.log().Info("pushing signed manifest as referrer", "ref", sigRef.String())
	if err := remote.Write(sigRef, sigImg, opts...); err != nil {
		return nil, fmt.Errorf("pushing signed manifest to %s: %w", sigRef, err)
	}
	return &Published{Bundle: tag.Context().Digest(desc.Digest.String()), Signature: sigRef}, nil
}

// Fetched is the result of Fetch.
type Fetched struct {
	Bundle name.Digest
	Signed *SignedManifest
	// Raw is the signed manifest bundle JSON as published.
	Raw []byte
	// Rejected lists referrers that were skipped, with the reason.
	Rejected []error
}

// Fetch resolves ref, finds the signed manifests attached to it, verifies
// them with pub (signature, schema, validity, rotation among themselves
// and opts.Others), checks that the artifact manifest is exactly the one
// the signed manifest describes, and, if dest is not empty, downloads and
// re-hashes every artifact into dest along with manifest.json and
// manifest.sigstore.json. When several signed manifests verify, the one
// with the latest epoch wins.
func (r *OCIRegistry) Fetch(ctx context.Context, ref string, pub crypto.PublicKey, opts VerifyOptions, dest string) (*Fetched, error) {
	nref, err := name.ParseReference(ref, r.Name...)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	ropts := append([]remote.Option{remote.WithContext(ctx)}, r.Remote...)
	desc, err := remote.Get(nref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", nref, err)
	}
	dig := nref.Context().Digest(desc.Digest.String())
	f, err := r.pickSigned(dig, pub, opts, ropts)
	if err != nil {
		return nil, err
	}
	want, _, err := BundleOCIManifest(f.Signed.Manifest)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(want, desc.Manifest) {
		return nil, fmt.Errorf("%w: artifact manifest %s differs from the one the signed manifest describes", ErrArtifact, dig)
	}
	if dest != "" {
		if err := r.download(dig, f, dest, ropts); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (r *OCIRegistry) pickSigned(dig name.Digest, pub crypto.PublicKey, opts VerifyOptions, ropts []remote.Option) (*Fetched, error) {
	idx, err := remote.Referrers(dig, ropts...)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", dig, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	f := &Fetched{Bundle: dig}
	type cand struct {
		s   *SignedManifest
		raw []byte
	}
	var cands []cand
	for _, d := range im.Manifests {
		if d.ArtifactType != "" && d.ArtifactType != MediaTypeSigstoreBundle {
			continue // another kind of referrer (SBOM, signature, ...)
		}
		raw, err := r.referrerBlob(dig.Context().Digest(d.Digest.String()), ropts)
		if err == nil {
			var s *SignedManifest
			if s, err = ParseBundle(raw); err == nil {
				if err = s.VerifySignature(pub); err == nil {
					cands = append(cands, cand{s, raw})
					continue
				}
			}
		}
		f.Rejected = append(f.Rejected, fmt.Errorf("referrer %s: %w", d.Digest, err))
	}
	var trusted []*SignedManifest
	for _, c := range cands {
		trusted = append(trusted, c.s)
	}
	others, err := verifiedOthers(opts.Others, pub)
	if err != nil {
		return nil, err
	}
	trusted = append(trusted, others...)
	var best *cand
	for i, c := range cands {
		err := errors.Join(c.s.CheckValidity(opts.Now), c.s.CheckRotation(trusted))
		if err != nil {
			f.Rejected = append(f.Rejected, fmt.Errorf("signed manifest %s: %w", c.s.Digest, err))
			continue
		}
		if best == nil || c.s.Manifest.Epoch > best.s.Manifest.Epoch {
			best = &cands[i]
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no valid signed manifest attached to %s: %w", dig, errors.Join(append([]error{ErrSignature}, f.Rejected...)...))
	}
	f.Signed, f.Raw = best.s, best.raw
	return f, nil
}

func (r *OCIRegistry) referrerBlob(d name.Digest, ropts []remote.Option) ([]byte, error) {
	img, err := remote.Image(d, ropts...)
	if err != nil {
		return nil, err
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(ls) != 1 {
		return nil, fmt.Errorf("%w: referrer has %d layers, want 1", ErrEnvelope, len(ls))
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxBundleSize+1))
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (r *OCIRegistry) download(dig name.Digest, f *Fetched, dest string, ropts []remote.Option) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, a := range f.Signed.Manifest.Artifacts {
		h, _ := v1.NewHash("sha256:" + a.SHA256)
		l, err := remote.Layer(dig.Context().Digest(h.String()), ropts...)
		if err != nil {
			return fmt.Errorf("fetching %s (%s): %w", a.Name, h, err)
		}
		r.log().Info("fetching artifact", "name", a.Name, "digest", h.String())
		if err := fetchTo(root, a, l); err != nil {
			return err
		}
	}
	canon, err := Encode(f.Signed.Manifest)
	if err != nil {
		return err
	}
	if err := root.WriteFile("manifest.json", canon, 0o644); err != nil {
		return err
	}
	if err := root.WriteFile("manifest.sigstore.json", f.Raw, 0o644); err != nil {
		return err
	}
	return CheckArtifacts(root.FS(), f.Signed.Manifest)
}

// fetchTo writes a layer to a temporary name, checks it against the
// artifact pin, and renames it into place only if it matches.
func fetchTo(root *os.Root, a Artifact, l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("fetching %s: %w", a.Name, err)
	}
	defer rc.Close()
	tmp := a.Name + ".partial"
	w, err := root.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, io.LimitReader(rc, a.Size+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkArtifact(root.FS(), Artifact{Name: tmp, Role: a.Role, SHA256: a.SHA256, Size: a.Size})
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("fetching %s: %w", a.Name, err)
	}
	return root.Rename(tmp, filepath.Clean(a.Name))
}
