// Package manifest defines mkcvm's reference-value manifest: its schema
// (schema/manifest-v1.json, JSON Schema 2020-12, enforced by Decode and
// Encode), canonical encoding, signing as an in-toto Statement v1 in a DSSE
// envelope inside a Sigstore bundle v0.3 (sigstore-go), verification that
// fails closed (schema, signature, subjects, validity, supersedes and
// revokes), comparison of published and recomputed values, and publishing
// to OCI registries (image-spec 1.1 artifacts and referrers, with the
// distribution-spec referrers tag fallback) through go-containerregistry.
//
// Subpackages: evidence checks SNP/TDX/TPM evidence against a manifest;
// export renders it for Trustee RVPS, Constellation, in-toto and CoRIM;
// manifesttest builds samples for tests.
//
// Keys are ECDSA P-256 or Ed25519 files. Left out: keyless (Fulcio/Rekor)
// signing and transparency-log checks.
package manifest
