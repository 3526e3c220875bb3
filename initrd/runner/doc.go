// Package runner is the library of mkcvm's attesting container runner, the
// init of the mkcvm initrd (cmd/mkcvm-runner). It boots the guest's user
// space, reads its configuration only from measured places (the kernel
// command line and a file in the initrd), records the workload in the
// workload event log (measure.WorkloadEvents) and extends it into the TPM's
// PCR measure.WorkloadPCR and TDX RTMR measure.WorkloadRTMR, pulls the image
// by digest with go-containerregistry, verifies every blob, extracts the
// layers into an os.Root-confined tree, runs the entrypoint in new mount,
// PID, UTS and IPC namespaces, and serves fresh evidence (TPM quote, SEV-SNP
// report, TDX quote) bound to a caller nonce, the workload log and a boot key
// over a unix socket inside the workload's root.
//
// It leaves out: OCI image indexes (pin the platform manifest), user
// namespaces, cgroups, seccomp, and image signature policies.
// See docs/runner.md.
package runner
