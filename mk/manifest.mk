# manifest: signing, publishing and verification tests (see docs/manifest.md).

# cosign is the independent verifier of our Sigstore bundles. Installed from
# the Go module proxy into a local bin dir, only if missing.
COSIGN_VERSION := v3.1.3
LOCAL_BIN := $(CURDIR)/.cache/bin
COSIGN := $(LOCAL_BIN)/cosign
export MKCVM_COSIGN := $(COSIGN)

# docker-registry: Debian's distribution 2.8 server (no referrers API), for
# the publish/fetch tests' tag-fallback path.
DEBS += docker-registry
# python3-jsonschema: an independent validator of our JSON Schema output.
DEBS += python3-jsonschema
TEST_PREREQS += cosign

.PHONY: cosign
cosign: $(COSIGN)

$(COSIGN):
	@mkdir -p $(LOCAL_BIN)
	GOBIN=$(LOCAL_BIN) $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_VERSION)
