# Foundation: the default recipe's Debian packages, `make demo` and `make repro`.

# Debian packages pinned by recipes/debian-bookworm.toml (bookworm main).
RECIPE_DEBS += ovmf=2022.11-6+deb12u2 linux-image-6.1.0-50-amd64=6.1.176-1

DEMO_RECIPE := recipes/debian-bookworm.toml
DEMO_OUT := out/demo

# demo builds the default recipe into out/demo and prints a short summary.
demo: build debs
	@mkdir -p $(dir $(DEMO_OUT))
	MKCVM_DEBDIR=$(DEBDIR) bin/mkcvm build $(DEMO_RECIPE) -o $(DEMO_OUT)
	@echo
	@echo "initrd:"; bin/mkcvm initrd ls $(DEMO_OUT)/initrd.cpio.* | sed 's/^/  /'
	@echo
	@echo "Boot it (TCG, about 20 s; Ctrl-A X quits):"
	@echo "  cp $(DEMO_OUT)/OVMF_VARS.fd /tmp/vars.fd && qemu-system-x86_64 -machine q35 -m 1G -smp 1 -net none -nographic -no-reboot \\"
	@echo "    -drive if=pflash,format=raw,readonly=on,file=$(DEMO_OUT)/OVMF_CODE.fd -drive if=pflash,format=raw,file=/tmp/vars.fd \\"
	@echo "    -kernel $(DEMO_OUT)/vmlinuz -initrd $$(ls $(DEMO_OUT)/initrd.cpio.*) -append \"$$(cat $(DEMO_OUT)/cmdline)\""

# repro builds every recipe twice, in different directories with different
# TZ, umask, HOME, GOCACHE, caches and working directories, and compares
# the sha256 of every output file. Recipes whose firmware is built from
# source (an edk2 build per run) are added here once that build is wired
# into `mkcvm build`.
REPRO_RECIPES ?= recipes/debian-bookworm.toml
repro: build debs
	@set -e; modcache=$$($(GO) env GOMODCACHE); top=$$(mktemp -d); trap 'chmod -R u+w $$top; rm -rf $$top' EXIT; \
	for r in $(REPRO_RECIPES); do \
	  name=$$(basename $$r .toml); \
	  for run in a b; do \
	    d=$$top/$$run/$$name; mkdir -p $$d/home $$d/work; \
	    if [ $$run = a ]; then tz=UTC; mask=022; else tz=Pacific/Chatham; mask=077; fi; \
	    echo "repro: $$r build $$run (TZ=$$tz umask $$mask)" >&2; \
	    ( umask $$mask; cd $$d/work; env TZ=$$tz HOME=$$d/home GOCACHE=$$d/gocache GOMODCACHE=$$modcache \
	      MKCVM_DEBDIR=$(DEBDIR) $(CURDIR)/bin/mkcvm build $(CURDIR)/$$r -o $$d/out --cache $$d/cache >/dev/null ); \
	    ( cd $$d/out && find . -type f | LC_ALL=C sort | xargs sha256sum ) > $$top/$$run/$$name.sums; \
	  done; \
	  if cmp -s $$top/a/$$name.sums $$top/b/$$name.sums; then echo "repro: $$r: identical ($$(wc -l < $$top/a/$$name.sums) files)"; \
	  else echo "repro: $$r: DIFFERENT" >&2; diff $$top/a/$$name.sums $$top/b/$$name.sums >&2; exit 1; fi; \
	done
