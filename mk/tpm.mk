# vTPM PCR prediction and explain (measure/eventlog*, authenticode*, kernel*,
# predict*, pcr*, profile*, measure/boottest, cmd/mkcvm/{measure_tpm,explain,
# capture}.go, builder/values_tpm.go). See docs/tpm.md.
#
# The boot tests (measure/boottest) run QEMU + Debian OVMF + swtpm with the
# Debian kernel from $(DEBDIR); the cross-checks run tpm2_eventlog
# (tpm2-tools) and osslsigncode.
DEBS += qemu-system-x86 ovmf swtpm swtpm-tools tpm2-tools osslsigncode
RECIPE_DEBS += ovmf=2022.11-6+deb12u2 linux-image-6.1.0-50-amd64=6.1.176-1
BENCH_PKGS += ./measure/

.PHONY: test-tpm bench-tpm fuzz-tpm tpm-profile

# test-tpm runs only the vTPM tests (unit, cross-checks and the real boots).
test-tpm: deps debs
	MKCVM_REQUIRE_VM=1 MKCVM_DEBDIR=$(DEBDIR) $(GO) test -count=1 ./measure/ ./measure/boottest/ ./builder/ \
	  -run 'EventLog|Replay|Marshal|PEImage|Kernel|QEMU|OVMF|VarStore|Predict|Explain|Tpm2|TPM|DirectBoot'

# bench-tpm: predict + replay PCRs 0-10 for the default recipe's shape
# against one SHA-256 + SHA-384 pass over the same kernel and initrd.
bench-tpm: debs
	MKCVM_DEBDIR=$(DEBDIR) $(GO) test -run '^$$' -bench 'BenchmarkPredict' -benchmem ./measure/

fuzz-tpm:
	@for t in FuzzParseEventLog FuzzParsePEImage FuzzParseVarStore FuzzParseOVMFVolumes FuzzQEMUPatchKernel; do \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./measure/; done

# tpm-profile captures the platform profile of the recipe's tpm-q35 shape
# (q35, 1024 MiB, 1 vCPU) into $(TPM_PROFILE), booting the Debian kernel with
# an initrd holding only cmd/mkcvm-init.
TPM_PROFILE ?= out/tpm-q35-1024m-1cpu.profile.json
tpm-profile: deps debs build
	@d=$$(mktemp -d); trap 'rm -rf $$d' EXIT; \
	dpkg-deb --fsys-tarfile $(DEBDIR)/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb | tar -x -C $$d ./boot/vmlinuz-6.1.0-50-amd64; \
	mkdir -p $$d/root; CGO_ENABLED=0 $(GO) build -trimpath -o $$d/root/init ./cmd/mkcvm-init; \
	(cd $$d/root && echo init | cpio -o -H newc --quiet > $$d/initrd.cpio); mkdir -p $$(dirname $(TPM_PROFILE)); \
	timeout 300 nice -n 10 bin/mkcvm capture --kernel $$d/boot/vmlinuz-6.1.0-50-amd64 --initrd $$d/initrd.cpio \
	  --append "console=ttyS0 panic=-1 quiet" --memory 1024 --vcpus 1 --machine q35 \
	  --ovmf-version "Debian ovmf $$(dpkg-query -W -f='$${Version}' ovmf)" -o $(TPM_PROFILE)
