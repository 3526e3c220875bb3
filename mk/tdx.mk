# Intel TDX: MRTD and RTMR0-3 (ovmf/tdx_metadata*, measure/mrtd*, rtmr*,
# tdx*, ccel*, cmd/mkcvm/measure_tdx.go, builder/values_tdx.go).
# The known-answer tests read Debian's OVMF.fd (installed, or from the
# pinned .deb) and the Debian kernel from $(DEBDIR), and real CC event logs
# from the go-eventlog module's test data (Go module cache).
RECIPE_DEBS += ovmf=2022.11-6+deb12u2 linux-image-6.1.0-50-amd64=6.1.176-1
TEST_PREREQS += tdx-testdata

.PHONY: tdx-testdata test-tdx bench-tdx kat-tdx

# tdx-testdata fetches the go-eventlog module (real CCELs + quote RTMRs).
tdx-testdata:
	$(GO) mod download github.com/google/go-eventlog

# test-tdx runs only the TDX tests.
test-tdx: debs tdx-testdata
	MKCVM_DEBDIR=$(DEBDIR) $(GO) test -count=1 ./ovmf/ ./measure/ ./builder/ ./cmd/mkcvm/ \
	  -run 'TDX|CCEL|MRTD|PageOrder|BzImage|QEMULoadOptions|FFS|CFV'

# bench-tdx compares MRTD + RTMR prediction for the default recipe's inputs
# with one SHA-384 pass over the same bytes (BenchmarkTDXSHA384Limit).
bench-tdx: debs
	MKCVM_DEBDIR=$(DEBDIR) $(GO) test -run '^$$' -bench 'TDX' -benchmem ./measure/

# kat-tdx recomputes the MRTD known answers with td-shim's stand-alone
# script (checked out in TD_SHIM, see testdata/provenance/tdx.md) and
# prints them next to ours; review and update measure/mrtd_test.go by hand.
TD_SHIM ?= /work/ref/td-shim
kat-tdx:
	@d=$$(mktemp -d); $(GO) run ./measure/testdata/tdx/gendata $$d >/dev/null; \
	for f in /usr/share/ovmf/OVMF.fd $$d/synth-a.fd $$d/synth-b.fd; do \
	  echo "$$f single   $$(python3 $(TD_SHIM)/td_shim_tee_info_hash.py -l off --image $$f)"; \
	  echo "$$f two-pass $$(python3 $(TD_SHIM)/td_shim_tee_info_hash_two_pass.py -l off --image $$f)"; \
	done; rm -rf $$d
