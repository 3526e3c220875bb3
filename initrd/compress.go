package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names, as written in recipes and manifests.
const (
	None = "none"
	Gzip = "gzip"
	Zstd = "zstd"
)

// Pinned compressor settings. Changing any of them changes initrd bytes;
// they are recorded in the manifest through CompressionID.
const (
	gzipLevel = gzip.BestCompression
	zstdLevel = zstd.SpeedBetterCompression
	// zstdWindow bounds the decoder memory the kernel needs.
	zstdWindow = 1 << 20
)

// CompressionID describes the exact compressor used for a compression
// name, e.g. "zstd (github.com/klauspost/compress/zstd, level better, window 1 MiB, 1 thread)".
func CompressionID(c string) string {
	switch c {
	case Gzip:
		return fmt.Sprintf("gzip (github.com/klauspost/compress/gzip, level %d, no name, mtime 0)", gzipLevel)
	case Zstd:
		return "zstd (github.com/klauspost/compress/zstd, level better, window 1 MiB, 1 thread)"
	}
	return c
}

// Compress compresses b with the named, pinned compressor. The output
// depends only on b and the compression name.
func Compress(c string, b []byte) ([]byte, error) {
	var out bytes.Buffer
	var w io.WriteCloser
	switch c {
	case None:
		return b, nil
	case Gzip:
		gw, err := gzip.NewWriterLevel(&out, gzipLevel)
		if err != nil {
			return nil, err
		}
		// The zero header: no name, no comment, mtime 0, OS unknown.
		gw.Header = gzip.Header{OS: 255, ModTime: time.Unix(0, 0)}
		w = gw
	case Zstd:
		zw, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstdLevel), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
		if err != nil {
			return nil, err
		}
		w = zw
	default:
		return nil, fmt.Errorf("compression %q: must be one of none, gzip, zstd", c)
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// MaxDecompressed caps the size of a decompressed archive.
const MaxDecompressed = 1 << 31

// Decompress detects the compression of an initrd by its magic bytes and
// returns the uncompressed archive and the compression name.
func Decompress(input string, b []byte) ([]byte, string, error) {
	var r io.Reader
	var name string
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, "", &FormatError{Input: input, Field: "gzip header", Reason: "unreadable", Err: err}
		}
		r, name = gr, Gzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecompressed))
		if err != nil {
			return nil, "", &FormatError{Input: input, Field: "zstd frame", Reason: "unreadable", Err: err}
		}
		defer zr.Close()
		r, name = zr, Zstd
	case bytes.HasPrefix(b, []byte(newcMagic)):
		return b, None, nil
	default:
		return nil, "", &FormatError{Input: input, Field: "magic", Reason: fmt.Sprintf("% x is neither newc cpio, gzip nor zstd", b[:min(len(b), 6)])}
	}
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(r, MaxDecompressed+1))
	if err != nil {
		return nil, "", &FormatError{Input: input, Field: name + " stream", Reason: "corrupt", Err: err}
	}
	if n > MaxDecompressed {
		return nil, "", &FormatError{Input: input, Field: name + " stream", Reason: fmt.Sprintf("decompresses to more than %d bytes", int64(MaxDecompressed)), Err: errors.ErrUnsupported}
	}
	return out.Bytes(), name, nil
}
