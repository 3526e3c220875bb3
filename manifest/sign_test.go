package manifest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

type testKey struct {
	priv, pub []byte
}

func newKey(t testing.TB, keyType ...string) testKey {
	t.Helper()
	priv, pub, err := manifest.GenerateKey(rand.Reader, keyType...)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv, pub}
}

func signSample(t testing.TB, k testKey, mutate func(*manifest.Manifest)) []byte {
	t.Helper()
	m := manifesttest.Sample()
	if mutate != nil {
		mutate(m)
	}
	pk, err := manifest.ParsePrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifest.Sign(m, pk, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var now = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func pubOf(t testing.TB, k testKey) crypto.PublicKey {
	t.Helper()
	p, err := manifest.ParsePublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSignVerify(t *testing.T) {
	for _, kt := range []string{manifest.KeyECDSAP256, manifest.KeyEd25519} {
		t.Run(kt, func(t *testing.T) { checkSignVerify(t, newKey(t, kt)) })
	}
}

func checkSignVerify(t *testing.T, k testKey) {
	b := signSample(t, k, nil)
	s, err := manifest.Verify(b, pubOf(t, k), manifest.VerifyOptions{Now: now})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want, _ := manifest.Digest(manifesttest.Sample())
	if s.Digest != want {
		t.Errorf("digest %s, want %s", s.Digest, want)
	}
	// The signed payload is canonical: two signatures, one payload.
	b2 := signSample(t, k, nil)
	s2, err := manifest.ParseBundle(b2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Payload, s2.Payload) {
		t.Errorf("payload differs between two signings")
	}
}

// mutateBundle decodes the bundle JSON generically, lets f change it, and
// re-encodes it.
func mutateBundle(t *testing.T, b []byte, f func(env map[string]any)) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	f(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func payloadEdit(t *testing.T, b []byte, edit func(p []byte) []byte) []byte {
	return mutateBundle(t, b, func(v map[string]any) {
		env := v["dsseEnvelope"].(map[string]any)
		p, err := base64.StdEncoding.DecodeString(env["payload"].(string))
		if err != nil {
			t.Fatal(err)
		}
		env["payload"] = base64.StdEncoding.EncodeToString(edit(p))
	})
}

func TestVerifyRejects(t *testing.T) {
	k, other := newKey(t), newKey(t)
	good := signSample(t, k, nil)
	older := signSample(t, k, func(m *manifest.Manifest) { m.Cmdline = "console=ttyS0" })
	olderM := manifesttest.Sample()
	olderM.Cmdline = "console=ttyS0"
	olderDigest, err := manifest.Digest(olderM)
	if err != nil {
		t.Fatal(err)
	}
	newer := signSample(t, k, func(m *manifest.Manifest) {
		m.Epoch++
		m.Validity = manifest.NewValidity(m.Epoch, 0)
		m.Supersedes = []string{olderDigest}
	})
	revoker := signSample(t, k, func(m *manifest.Manifest) { m.Epoch += 2; m.Validity = nil; m.Revokes = []string{olderDigest} })
	forgedNewer := signSample(t, other, func(m *manifest.Manifest) { m.Epoch++; m.Validity = nil; m.Supersedes = []string{olderDigest} })
	expiring := signSample(t, k, func(m *manifest.Manifest) { m.Validity = manifest.NewValidity(m.Epoch, 24*time.Hour) })

	for _, tc := range []struct {
		name   string
		bundle []byte
		opts   manifest.VerifyOptions
		want   error
		msg    string
	}{
		{"flipped byte in manifest", payloadEdit(t, good, func(p []byte) []byte {
			return bytes.Replace(p, []byte("console=ttyS0 quiet"), []byte("console=ttyS0 quieT"), 1)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrSignature, "does not verify"},
		{"flipped byte in signature", mutateBundle(t, good, func(v map[string]any) {
			sig := v["dsseEnvelope"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
			raw, _ := base64.StdEncoding.DecodeString(sig["sig"].(string))
			raw[len(raw)-3] ^= 1
			sig["sig"] = base64.StdEncoding.EncodeToString(raw)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrSignature, ""},
		{"signed by another key", signSample(t, other, nil), manifest.VerifyOptions{Now: now}, manifest.ErrSignature, manifest.KeyID(pubOf(t, k))},
		{"signed by an Ed25519 key", signSample(t, newKey(t, manifest.KeyEd25519), nil), manifest.VerifyOptions{Now: now}, manifest.ErrSignature, "does not verify"},
		{"unknown statement field", payloadEdit(t, good, func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"predicateType"`), []byte(`"extra":1,"predicateType"`), 1)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrEnvelope, "extra"},
		{"unknown manifest field", payloadEdit(t, good, func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"cmdline":`), []byte(`"kernel_args":"x","cmdline":`), 1)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrSchema, "kernel_args"},
		{"foreign predicate type", payloadEdit(t, good, func(p []byte) []byte {
			return bytes.Replace(p, []byte(manifest.PredicateType), []byte("https://slsa.dev/provenance/v1"), 1)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrEnvelope, "predicateType"},
		{"subject swapped", payloadEdit(t, good, func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"name":"vmlinuz"`), []byte(`"name":"vmlinux"`), 1)
		}), manifest.VerifyOptions{Now: now}, manifest.ErrSubject, "vmlinux"},
		{"unknown bundle field", mutateBundle(t, good, func(v map[string]any) { v["comment"] = "x" }), manifest.VerifyOptions{Now: now}, manifest.ErrEnvelope, "comment"},
		{"two signatures", mutateBundle(t, good, func(v map[string]any) {
			env := v["dsseEnvelope"].(map[string]any)
			s := env["signatures"].([]any)
			env["signatures"] = append(s, s[0])
		}), manifest.VerifyOptions{Now: now}, manifest.ErrEnvelope, "2 signatures"},
		{"expired", expiring, manifest.VerifyOptions{Now: time.Unix(manifesttest.Epoch, 0).Add(25 * time.Hour)}, manifest.ErrExpired, "expired at 2026-01-02T00:00:00Z"},
		{"not yet valid", good, manifest.VerifyOptions{Now: time.Unix(manifesttest.Epoch-1, 0)}, manifest.ErrNotYetValid, ""},
		{"no clock", good, manifest.VerifyOptions{}, nil, "no verification time"},
		{"replayed superseded manifest", older, manifest.VerifyOptions{Now: now, Others: [][]byte{newer}}, manifest.ErrSuperseded, olderDigest},
		{"revoked manifest", older, manifest.VerifyOptions{Now: now, Others: [][]byte{revoker}}, manifest.ErrRevoked, olderDigest},
		{"supersedes claim by another key", older, manifest.VerifyOptions{Now: now, Others: [][]byte{forgedNewer}}, manifest.ErrSignature, "other manifest 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := manifest.Verify(tc.bundle, pubOf(t, k), tc.opts)
			if err == nil {
				t.Fatal("Verify accepted the bundle")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
	// The newer manifest itself verifies, with or without the older one.
	if _, err := manifest.Verify(newer, pubOf(t, k), manifest.VerifyOptions{Now: now, Others: [][]byte{older}}); err != nil {
		t.Errorf("newer manifest: %v", err)
	}
}

// TestCosignVerifyBlobAttestation checks our bundle with cosign, an
// independent verifier, and checks that cosign rejects a bundle signed by
// another key and a blob not named in the subjects.
func TestCosignVerifyBlobAttestation(t *testing.T) {
	cosign := manifesttest.Cosign(t)
	for _, kt := range []string{manifest.KeyECDSAP256, manifest.KeyEd25519} {
		t.Run(kt, func(t *testing.T) { checkCosignBlob(t, cosign, newKey(t, kt), newKey(t, kt)) })
	}
}

func checkCosignBlob(t *testing.T, cosign string, k, other testKey) {
	dir := manifesttest.WriteDir(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub := write("key.pub", k.pub)
	good := write("good.sigstore.json", signSample(t, k, nil))
	bad := write("other.sigstore.json", signSample(t, other, nil))
	stray := write("stray", []byte("not an artifact"))
	run := func(bundle, blob string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cosign, "verify-blob-attestation", "--key", pub, "--insecure-ignore-tlog",
			"--bundle", bundle, "--type", manifest.PredicateType, blob)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "TUF_ROOT="+t.TempDir(), "SIGSTORE_NO_CACHE=1")
		out, err := cmd.CombinedOutput()
		t.Logf("cosign %s %s: %s", filepath.Base(bundle), filepath.Base(blob), out)
		return err
	}
	for _, name := range []string{"OVMF.fd", "vmlinuz", "initrd.img"} {
		if err := run(good, filepath.Join(dir, name)); err != nil {
			t.Errorf("cosign rejected our bundle for %s: %v", name, err)
		}
	}
	if run(bad, filepath.Join(dir, "vmlinuz")) == nil {
		t.Error("cosign accepted a bundle signed by another key")
	}
	if run(good, stray) == nil {
		t.Error("cosign accepted a blob that is not a subject")
	}
}

func FuzzParseBundle(f *testing.F) {
	k := newKey(f)
	good := signSample(f, k, nil)
	f.Add(good)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{}`))
	pub := pubOf(f, k)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		s, err := manifest.ParseBundle(b)
		if err != nil {
			return
		}
		// A parsed bundle carries a canonical manifest whose statement
		// re-encodes to the signed payload.
		p, err := manifest.NewStatement(s.Manifest)
		if err != nil {
			t.Fatalf("parsed manifest does not re-encode: %v", err)
		}
		if !bytes.Equal(p, s.Payload) {
			t.Fatalf("payload is not canonical")
		}
		_ = s.VerifySignature(pub)
	})
}
