package runner

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Key-broker protocol (docs/runner.md): GET <kbs>/challenge returns
// {"nonce": base64}; POST <kbs>/secret with an EvidenceResponse bound to that
// nonce returns a SealedSecret encrypted to the boot key.

// SealedSecret is a secret encrypted to the runner's boot key: ECDH P-256
// with an ephemeral key, HKDF-SHA256 (info sealInfo) to an AES-256-GCM key,
// zero nonce (each key seals one message).
type SealedSecret struct {
	EphemeralPublicKey []byte `json:"ephemeral_public_key"` // PKIX DER
	Ciphertext         []byte `json:"ciphertext"`
}

const (
	sealInfo       = "mkcvm-runner/sealed-secret/v1"
	maxKBSResponse = 1 << 20
)

// ErrKBS marks key-broker failures.
var ErrKBS = errors.New("key broker")

// Seal encrypts secret to the PKIX DER public key pubDER (a key broker's
// side; the runner only opens). rand supplies the ephemeral key.
func Seal(pubDER, secret []byte, rand io.Reader) (*SealedSecret, error) {
	pk, err := parseECDHPublic(pubDER)
	if err != nil {
		return nil, err
	}
	eph, err := ecdh.P256().GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	aead, err := sealAEAD(eph, pk)
	if err != nil {
		return nil, err
	}
	ephDER, err := x509.MarshalPKIXPublicKey(eph.PublicKey())
	if err != nil {
		return nil, err
	}
	return &SealedSecret{EphemeralPublicKey: ephDER, Ciphertext: aead.Seal(nil, make([]byte, aead.NonceSize()), secret, ephDER)}, nil
}

// Open decrypts s with the boot key.
func Open(key *ecdh.PrivateKey, s *SealedSecret) ([]byte, error) {
	pk, err := parseECDHPublic(s.EphemeralPublicKey)
	if err != nil {
		return nil, err
	}
	aead, err := sealAEAD(key, pk)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, make([]byte, aead.NonceSize()), s.Ciphertext, s.EphemeralPublicKey)
}

func parseECDHPublic(der []byte) (*ecdh.PublicKey, error) {
	p, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	switch k := p.(type) {
	case *ecdh.PublicKey:
		return k, nil
	case interface {
		ECDH() (*ecdh.PublicKey, error)
	}:
		return k.ECDH()
	}
	return nil, fmt.Errorf("public key is %T, want ECDH P-256", p)
}

func sealAEAD(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	k, err := hkdf.Key(sha256.New, shared, nil, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// FetchSecret runs the key-broker exchange and returns the opened secret.
func FetchSecret(ctx context.Context, hc *http.Client, kbs string, a *Attester) ([]byte, error) {
	base := strings.TrimSuffix(kbs, "/")
	var ch struct {
		Nonce []byte `json:"nonce"`
	}
	if err := kbsDo(ctx, hc, http.MethodGet, base+"/challenge", nil, &ch); err != nil {
		return nil, err
	}
	if len(ch.Nonce) < minNonce || len(ch.Nonce) > maxNonce {
		return nil, fmt.Errorf("%w: challenge nonce of %d bytes, want %d to %d", ErrKBS, len(ch.Nonce), minNonce, maxNonce)
	}
	ev, err := a.Evidence(ctx, ch.Nonce)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKBS, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	var s SealedSecret
	if err := kbsDo(ctx, hc, http.MethodPost, base+"/secret", body, &s); err != nil {
		return nil, err
	}
	secret, err := Open(a.key, &s)
	if err != nil {
		return nil, fmt.Errorf("%w: opening the sealed secret: %w", ErrKBS, err)
	}
	return secret, nil
}

func kbsDo(ctx context.Context, hc *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKBS, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrKBS, method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKBSResponse))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrKBS, method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s %s: %s: %s", ErrKBS, method, url, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: decoding response: %w", ErrKBS, method, url, err)
	}
	return nil
}
