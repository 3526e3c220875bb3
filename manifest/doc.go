// Package manifest defines mkcvm's reference-value manifest: its schema,
// canonical encoding, signing and verification, and publishing to OCI
// registries.
package manifest
