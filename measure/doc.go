// Package measure computes launch digests and register values offline:
// SEV/SEV-ES/SEV-SNP launch digests, TDX MRTD and RTMRs, TPM PCRs, and the
// event logs that explain them. It performs no I/O and reads no clock.
package measure
