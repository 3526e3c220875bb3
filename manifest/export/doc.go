// Package export renders a manifest's reference values in the formats of
// verifiers people already run:
//
//   - Trustee (confidential-containers) RVPS: a "sample" provenance message
//     whose payload maps reference-value names (snp_launch_measurement,
//     mr_td, rtmr_0..3, tpm_pcr0..23) to lists of accepted hex values, as
//     the attestation service's default policy queries them.
//   - Constellation's measurements.json (ImageMeasurementsV2: one entry per
//     attestation variant, PCR/register index -> expected + warnOnly).
//   - an in-toto Statement v1 with the manifest as predicate (unsigned; the
//     signed form is `mkcvm sign`'s bundle).
//   - a COSE_Sign1-signed CoRIM (draft-ietf-rats-corim) holding one CoMID
//     with a reference-value triple per shape, built with veraison/corim.
//
// The register-to-key mapping of each format is documented in
// docs/manifest.md.
package export
