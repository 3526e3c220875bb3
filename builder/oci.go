package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fetchOCI returns one layer blob (in.Layer) or one file from the layers
// (in.Path, topmost layer first) of the image or artifact in.OCI, which is
// pinned by digest. go-containerregistry verifies manifest and blob
// digests while reading.
func (f *SourceFetcher) fetchOCI(ctx context.Context, in Input) (io.ReadCloser, error) {
	ref, err := name.NewDigest(in.OCI)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", in.OCI, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx)}, f.Remote...)
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: listing layers: %w", ref, err)
	}
	if in.Layer != "" {
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return nil, err
			}
			if d.String() == in.Layer {
				return l.Compressed()
			}
		}
		return nil, fmt.Errorf("%s: layer %s: %w", ref, in.Layer, ErrNoMember)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		if mt, err := layers[i].MediaType(); err != nil || !mt.IsLayer() {
			continue // an artifact blob, not a file system layer
		}
		b, found, err := layerFile(layers[i], in.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", ref, i, err)
		}
		if found {
			return io.NopCloser(bytes.NewReader(b)), nil
		}
	}
	return nil, fmt.Errorf("%s: %q: %w", ref, in.Path, ErrNoMember)
}

// layerFile looks for p in one layer. A whiteout of p counts as found and
// is an error (the file was deleted).
func layerFile(l v1.Layer, p string) ([]byte, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	wh := path.Join(path.Dir(p), ".wh."+path.Base(p))
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		n := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		switch {
		case n == wh:
			return nil, true, fmt.Errorf("%q is deleted by a whiteout", p)
		case n != p:
			continue
		case h.Typeflag != tar.TypeReg:
			return nil, true, fmt.Errorf("%q is not a regular file (tar type %q)", p, h.Typeflag)
		case h.Size > maxMember:
			return nil, true, fmt.Errorf("%q: %d bytes exceeds the limit of %d", p, h.Size, maxMember)
		}
		var b bytes.Buffer
		_, err = io.Copy(&b, tr)
		return b.Bytes(), true, err
	}
}
