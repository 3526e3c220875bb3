package runner

import (
	"crypto/ecdh"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
)

func TestEvidenceEndpointNonce(t *testing.T) {
	key, _ := ecdh.P256().GenerateKey(rand.Reader)
	a, err := NewAttester([]TEE{&SoftwareBank{}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Record(measure.WorkloadEvent{Type: measure.WorkloadSeparator}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query string
		code        int
	}{
		{name: "ok", query: "?nonce=0011223344556677", code: http.StatusOK},
		{name: "missing", query: "", code: http.StatusBadRequest},
		{name: "short", query: "?nonce=00112233", code: http.StatusBadRequest},
		{name: "not hex", query: "?nonce=zz11223344556677", code: http.StatusBadRequest},
		{name: "long", query: "?nonce=" + string(make([]byte, 0)) + repeatHex(65), code: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/evidence"+tc.query, nil))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
		})
	}
}

func repeatHex(n int) string {
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

func TestSealOpen(t *testing.T) {
	key, _ := ecdh.P256().GenerateKey(rand.Reader)
	a, _ := NewAttester(nil, key)
	s, err := Seal(a.pubDER, []byte("secret"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(key, s)
	if err != nil || string(got) != "secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	s.Ciphertext[0] ^= 1
	if _, err := Open(key, s); err == nil {
		t.Fatal("a modified ciphertext opened")
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	s.Ciphertext[0] ^= 1
	if _, err := Open(other, s); err == nil {
		t.Fatal("another key opened the secret")
	}
}
