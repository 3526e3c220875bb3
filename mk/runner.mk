# runner: the attesting container runner, the initrd's init (docs/runner.md).

# go-tpm-tools' TPM simulator (unit tests of initrd/runner) is cgo and links
# OpenSSL's libcrypto. The e2e test also uses dpkg-deb, tar, QEMU, OVMF and
# swtpm (already in DEBS) and the kernel/OVMF debs (RECIPE_DEBS).
DEBS += gcc libc6-dev libssl-dev

.PHONY: runner runner-e2e
# runner builds the static in-guest binary the way the initrd build does.
runner:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o bin/mkcvm-runner ./cmd/mkcvm-runner

# runner-e2e runs only the end-to-end boot test, verbose (prints the initrd
# size, boot-to-workload time and the PCR 15 values).
runner-e2e: deps debs
	MKCVM_DEBDIR=$(DEBDIR) MKCVM_REQUIRE_VM=1 $(GO) test -v -count=1 -run TestE2E -timeout 20m ./initrd/runner/e2e
