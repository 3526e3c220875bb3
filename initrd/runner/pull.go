package runner

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/mkcvm/mkcvm/measure"
)

// Size limits of the small blobs read into memory.
const (
	maxManifestBytes = 4 << 20
	maxConfigBytes   = 16 << 20
)

// ErrDigest marks blobs whose bytes do not match the digest that names them.
var ErrDigest = errors.New("digest mismatch")

// PullOptions configure the registry client.
type PullOptions struct {
	Insecure  bool              // allow plain HTTP
	Transport http.RoundTripper // nil: http.DefaultTransport
}

// Image is an image whose manifest and config have been fetched and
// verified against the pinned digest.
type Image struct {
	Ref            string // as configured
	digest         name.Digest
	ManifestDigest string // sha256:<hex> (equal to the reference's digest)
	ConfigDigest   string // sha256:<hex>
	Manifest       *v1.Manifest
	Config         *v1.ConfigFile
	opts           []remote.Option
}

// FetchImage fetches the manifest named by ref (which must carry a digest),
// checks its bytes hash to that digest and that it is an image manifest (not
// an index), then fetches and verifies the config blob.
func FetchImage(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	want, err := measure.ImageDigest(ref)
	if err != nil {
		return nil, err
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	d, err := name.NewDigest(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	tr := o.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(authn.Anonymous)}
	desc, err := remote.Get(d, ropts...)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", ref, err)
	}
	if len(desc.Manifest) > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s: %d bytes exceeds %d", ref, len(desc.Manifest), maxManifestBytes)
	}
	if got := sha256Digest(desc.Manifest); got != want {
		return nil, fmt.Errorf("%w: manifest of %s hashes to %s", ErrDigest, ref, got)
	}
	switch desc.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	case types.OCIImageIndex, types.DockerManifestList:
		return nil, fmt.Errorf("image reference %q names an index (%s): pin the platform's image manifest digest", ref, desc.MediaType)
	default:
		return nil, fmt.Errorf("manifest %s: unsupported media type %q", ref, desc.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", ref, err)
	}
	img := &Image{Ref: ref, digest: d, ManifestDigest: want, Manifest: m, opts: ropts}
	cfg, err := img.blob(m.Config, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	img.ConfigDigest = m.Config.Digest.String()
	if img.Config, err = v1.ParseConfigFile(bytes.NewReader(cfg)); err != nil {
		return nil, fmt.Errorf("parsing image config %s: %w", img.ConfigDigest, err)
	}
	return img, nil
}

func sha256Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// blobReader opens a blob of the image's repository.
func (img *Image) blobReader(desc v1.Descriptor) (io.ReadCloser, error) {
	if desc.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: only sha256 digests are accepted", desc.Digest)
	}
	l, err := remote.Layer(img.digest.Context().Digest(desc.Digest.String()), img.opts...)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return l.Compressed()
}

// blob reads a small blob into memory and verifies size and digest.
func (img *Image) blob(desc v1.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("blob %s: size %d outside [0, %d]", desc.Digest, desc.Size, limit)
	}
	rc, err := img.blobReader(desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(&buf, h), io.LimitReader(rc, desc.Size+1))
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != desc.Size || got != desc.Digest.String() {
		return nil, fmt.Errorf("%w: blob %s: got %d bytes hashing to %s, want %d bytes (read error: %v)", ErrDigest, desc.Digest, n, got, desc.Size, err)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return buf.Bytes(), nil
}

// FetchLayers downloads every layer blob into dir and verifies its size and
// digest. Nothing is extracted until every layer has been verified, so a
// registry serving wrong bytes leaves no trace in the root.
func (img *Image) FetchLayers(ctx context.Context, dir string) ([]string, error) {
	var files []string
	for i, l := range img.Manifest.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, fmt.Sprintf("layer-%03d", i))
		if err := img.fetchLayer(l, p); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		files = append(files, p)
	}
	return files, nil
}

func (img *Image) fetchLayer(desc v1.Descriptor, p string) error {
	if desc.Size < 0 {
		return fmt.Errorf("negative size %d", desc.Size)
	}
	rc, err := img.blobReader(desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, cerr := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, desc.Size+1))
	if err := f.Close(); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != desc.Size || got != desc.Digest.String() {
		os.Remove(p)
		return fmt.Errorf("%w: got %d bytes hashing to %s, want %d bytes (read error: %v)", ErrDigest, n, got, desc.Size, cerr)
	}
	return cerr
}

// Decompress returns the uncompressed tar stream of a verified layer file.
func Decompress(mt types.MediaType, r io.Reader) (io.ReadCloser, error) {
	s := string(mt)
	switch {
	case strings.HasSuffix(s, "gzip"):
		return gzip.NewReader(r)
	case strings.HasSuffix(s, "zstd"):
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case strings.HasSuffix(s, ".tar"):
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unsupported layer media type %q", mt)
}

// ExtractLayers applies verified layer files in order to root. It returns
// every rejection of every layer, or the first error that stops a layer.
func (img *Image) ExtractLayers(root *os.Root, files []string, o ExtractOptions) error {
	x := NewExtractor(root, o)
	var errs []error
	for i, p := range files {
		if err := img.extractOne(x, i, p); err != nil {
			errs = append(errs, err)
			if !allRejections(err) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (img *Image) extractOne(x *Extractor, i int, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr, err := Decompress(img.Manifest.Layers[i].MediaType, f)
	if err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	defer tr.Close()
	return x.Layer(i, tr)
}

func allRejections(err error) bool {
	for _, e := range unwrapAll(err) {
		if _, ok := errors.AsType[*Rejection](e); !ok {
			return false
		}
	}
	return true
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}
