# SEV/SEV-ES/SEV-SNP launch digests (ovmf/, measure/snp*, measure/sev*,
# cmd/mkcvm/measure_snp.go). The known-answer tests read Debian's OVMF and
# a Debian kernel from $(DEBDIR) (env MKCVM_DEBDIR under make test).
RECIPE_DEBS += ovmf=2022.11-6+deb12u2 linux-image-6.1.0-50-amd64=6.1.176-1
BENCH_PKGS += ./measure/

.PHONY: test-snp bench-snp kat-snp
# test-snp runs only the SEV/SNP tests.
test-snp: debs
	MKCVM_DEBDIR=$(DEBDIR) $(GO) test -count=1 ./ovmf/ ./measure/ ./cmd/mkcvm/ ./builder/ -run 'SNP|SEV|Footer|GUID|IDBlock|ResetBlock|HashTable'

# bench-snp compares one SNP digest and a 256-shape matrix with one
# SHA-384 + SHA-256 pass over the same 44 MiB (BenchmarkSNPHashLimit).
bench-snp:
	$(GO) test -run '^$$' -bench 'SNP' -benchmem ./measure/

# kat-snp regenerates measure/testdata/snp/kat.tsv with sev-snp-measure
# 0.0.13 (git 5b6a79e) checked out in SEV_SNP_MEASURE; review the diff
# (see testdata/provenance/snp.md).
SEV_SNP_MEASURE ?= /work/ref/kat/sev-snp-measure-0.0.13
kat-snp: debs
	@git -C $(SEV_SNP_MEASURE) rev-parse HEAD | grep -q '^5b6a79e' || { echo "check out sev-snp-measure v0.0.13 in $(SEV_SNP_MEASURE)" >&2; exit 1; }
	d=$$(mktemp -d); trap 'rm -rf $$d' EXIT; \
	dpkg-deb -x $(DEBDIR)/ovmf_2022.11-6+deb12u2_all.deb $$d/ovmf; \
	{ dpkg-deb --fsys-tarfile $(DEBDIR)/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb | tar -x -C $$d --occurrence=1 ./boot/vmlinuz-6.1.0-50-amd64; } 2>/dev/null || test -s $$d/boot/vmlinuz-6.1.0-50-amd64; \
	cp $$d/ovmf/usr/share/ovmf/OVMF.fd $$d/debian-OVMF.fd; cp $$d/ovmf/usr/share/OVMF/OVMF_CODE.fd $$d/debian-OVMF_CODE.fd; \
	cp $$d/ovmf/usr/share/OVMF/OVMF_CODE_4M.fd $$d/debian-OVMF_CODE_4M.fd; cp $$d/boot/vmlinuz-6.1.0-50-amd64 $$d/; \
	cp measure/testdata/snp/*.bin measure/testdata/snp/initrd.cpio.gz $$d/; \
	for f in svsm.bin svsm_ovmf.fd; do gzip -dc measure/testdata/snp/$$f.gz > $$d/$$f; done; \
	(cd $$d && python3 $(CURDIR)/measure/testdata/snp/gen_kat.py $(SEV_SNP_MEASURE)) > measure/testdata/snp/kat.tsv
