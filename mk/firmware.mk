# Firmware built from Debian's edk2 source package (docs/firmware.md).
#
# `make test` downloads the pinned source package (after adding a deb-src
# entry for the machine's Debian release when there is none), installs the
# pinned toolchain and sets MKCVM_FIRMWARE_BUILD=1, which turns on the real
# edk2 builds in builder/firmware_build_test.go (several minutes). Quick runs
# (`go test ./builder`) skip them.

# Toolchain of [firmware.source] (builder/testdata/firmware/*.toml pin the
# exact versions; bookworm's are installed here).
FIRMWARE_DEBS := acpica-tools binutils g++ gcc libc6-dev make nasm patch python3 uuid-dev \
	dosfstools mtools grub-common grub-efi-amd64-bin
DEBS += $(FIRMWARE_DEBS)

# The pinned edk2 source package and where its files are downloaded.
EDK2_SOURCE := edk2
EDK2_VERSION := 2022.11-6+deb12u2
FIRMWARE_SRCDIR := $(CURDIR)/.cache/src
FIRMWARE_CACHE := $(CURDIR)/.cache/firmware
DEB_SRC_LIST := /etc/apt/sources.list.d/mkcvm-deb-src.sources

TEST_PREREQS += firmware-src firmware-tools
test: export MKCVM_FIRMWARE_BUILD := 1
test: export MKCVM_SRCDIR := $(FIRMWARE_SRCDIR)
test: export MKCVM_FIRMWARE_CACHE := $(FIRMWARE_CACHE)

.PHONY: deb-src firmware-src firmware-tools firmware

# FIRMWARE_TOOL_PINS lists package=version of the toolchain the SNP recipe
# pins (a superset of the other firmware recipes' pins).
FIRMWARE_TOOL_PINS = $(shell awk '/^\[\[firmware\.source\.tool\]\]/{t=1;next} t&&/^package/{gsub(/"/,"",$$3);p=$$3} t&&/^version/{gsub(/"/,"",$$3);print p"="$$3;t=0}' recipes/debian-bookworm-snp.toml)

# firmware-tools installs exactly the pinned toolchain versions (mkcvm
# refuses to build with others).
firmware-tools: deps
	@missing=""; for pv in $(FIRMWARE_TOOL_PINS); do p=$${pv%%=*}; v=$${pv#*=}; \
	  [ "$$(dpkg-query -W -f='$${Version}' $$p 2>/dev/null)" = "$$v" ] || missing="$$missing $$pv"; done; \
	if [ -n "$$missing" ]; then echo "installing pinned toolchain:$$missing" >&2; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends --allow-downgrades $$missing >&2; fi

# deb-src adds "Types: deb-src" twins of the machine's deb822 "Types: deb"
# stanzas (same URIs, suites, components and keys), or deb-src lines for a
# one-line sources.list, unless apt already knows the source package.
deb-src: deps
	@if apt-cache showsrc $(EDK2_SOURCE)=$(EDK2_VERSION) 2>/dev/null | grep -q '^Package:'; then exit 0; fi; \
	tmp=$$(mktemp); \
	for f in /etc/apt/sources.list.d/*.sources; do [ -e "$$f" ] || continue; \
	  awk 'BEGIN{RS=""; ORS="\n\n"} /(^|\n)Types:[ \t]*deb([ \t]|\n|$$)/ && !/(^|\n)Enabled:[ \t]*no/ { sub(/Types:[ \t]*deb[^\n]*/, "Types: deb-src"); print }' "$$f" >> "$$tmp"; done; \
	if [ -s "$$tmp" ]; then $(SUDO) install -m 0644 "$$tmp" $(DEB_SRC_LIST); \
	elif [ -e /etc/apt/sources.list ]; then sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$$tmp"; \
	  $(SUDO) install -m 0644 "$$tmp" /etc/apt/sources.list.d/mkcvm-deb-src.list; fi; \
	rm -f "$$tmp"; echo "added deb-src entries; apt-get update" >&2; $(SUDO) apt-get update -qq

# firmware-src downloads the pinned .dsc and tarballs (mkcvm checks their
# sha256 against the recipe before using them).
firmware-src: deb-src
	@mkdir -p $(FIRMWARE_SRCDIR); cd $(FIRMWARE_SRCDIR); \
	v=$$(echo '$(EDK2_VERSION)' | sed 's/^[0-9]*://'); \
	[ -e $(EDK2_SOURCE)_$$v.dsc ] || apt-get source --download-only -qq $(EDK2_SOURCE)=$(EDK2_VERSION) >&2

# firmware builds the three platforms into $(FIRMWARE_CACHE) (cache hits
# after the first time) and prints "sha256  path" for each.
firmware: build firmware-src
	@for r in recipes/debian-bookworm-snp.toml builder/testdata/firmware/ovmfx64.toml builder/testdata/firmware/inteltdx.toml; do \
	  bin/mkcvm firmware build --recipe $$r --source-dir $(FIRMWARE_SRCDIR) --cache $(FIRMWARE_CACHE); done
