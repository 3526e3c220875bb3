// Package e2e holds the runner's end-to-end test: a recipe whose initrd's
// init is cmd/mkcvm-runner is built with builder.Build, a real OCI registry
// on 127.0.0.1 serves a tiny static workload by digest, and QEMU (TCG, OVMF,
// swtpm) boots the bundle with user networking restricted to a guestfwd to
// that registry.
package e2e
