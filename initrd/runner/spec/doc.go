// Package spec is the runner's external interface, with no device code: the
// configuration format (the initrd's /etc/mkcvm/runner.conf and the
// mkcvm.* kernel command-line keys) and the JSON wire format of the evidence
// it serves. The builder writes the configuration with it and verifiers
// decode the evidence with it, without linking the runner's TEE clients.
package spec
