package runner

import (
	"io"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type httpHandler = http.Handler

func trackServed(h http.Handler, digest string, served *bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+digest) {
			*served = true
		}
		h.ServeHTTP(w, r)
	})
}

func mustRead(t *testing.T, l v1.Layer) []byte {
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
