package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mkcvm/mkcvm/initrd"
)

// BenchmarkRunnerSize reports the size of the static runner binary as the
// initrd build makes it (CGO_ENABLED=0, initrd.BuildFlags), raw and gzip -9.
func BenchmarkRunnerSize(b *testing.B) {
	out := filepath.Join(b.TempDir(), "init")
	cmd := exec.Command("go", append(append([]string{"build"}, initrd.BuildFlags...), "-o", out, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, o)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var gz bytes.Buffer
	for b.Loop() {
		gz.Reset()
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		w.Write(bin)
		w.Close()
	}
	b.ReportMetric(float64(len(bin)), "runner-bytes")
	b.ReportMetric(float64(gz.Len()), "runner-gzip-bytes")
}
