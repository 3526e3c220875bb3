# mkcvm. Two entry points for a fresh Debian machine (run as root, or with
# sudo available): `make demo` and `make test`. Everything the tests need is
# installed here. Areas add their own variables and targets in mk/*.mk.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
export GOFLAGS := -buildvcs=false
export GOTOOLCHAIN := local
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests and the demo need. mk/*.mk append to it.
DEBS := qemu-system-x86 ovmf swtpm swtpm-tools tpm2-tools zstd xz-utils cpio
# Directory holding downloaded .deb inputs for recipes (see recipes/README.md).
DEBDIR := $(CURDIR)/.cache/debs
# Packages whose .debs recipes pin. mk/*.mk append to it.
RECIPE_DEBS :=
# Go test timeout for `make test`.
TEST_TIMEOUT := 60m
# Benchmarks: package patterns run by `make bench`. mk/*.mk append.
BENCH_PKGS :=
# Prerequisites of `make test` besides deps. mk/*.mk append.
TEST_PREREQS :=

-include mk/*.mk

.PHONY: all build deps debs demo test bench fuzz repro golden clean
all: build

build:
	$(GO) build -trimpath -o bin/mkcvm ./cmd/mkcvm

# deps installs the Debian packages once (apt-get update only when something is missing).
deps:
	@missing=""; for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing" >&2; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >&2; fi

# debs downloads the .deb files the recipes pin into $(DEBDIR).
debs: deps
	@mkdir -p $(DEBDIR); cd $(DEBDIR); for p in $(RECIPE_DEBS); do \
	  f=$$(echo "$$p" | sed 's/=/_/; s/:/%3a/')_amd64.deb; f2=$$(echo "$$p" | sed 's/=/_/; s/:/%3a/')_all.deb; \
	  [ -e "$$f" ] || [ -e "$$f2" ] || apt-get download -q "$$p" >&2 || { $(SUDO) apt-get update -qq && apt-get download -q "$$p" >&2; } || \
	  { echo "make debs: pinned package $$p is not in the archive any more; run 'bin/mkcvm lock RECIPE' to re-resolve the recipe's pins" >&2; exit 1; }; done

test: deps debs $(TEST_PREREQS)
	$(GO) vet ./...
	MKCVM_REQUIRE_VM=1 MKCVM_DEBDIR=$(DEBDIR) $(GO) test -timeout $(TEST_TIMEOUT) ./...

bench: deps debs
	MKCVM_DEBDIR=$(DEBDIR) $(GO) test -run '^$$' -bench . -benchmem $(BENCH_PKGS) ./...

# fuzz runs every fuzz target for FUZZTIME (go test -fuzz takes one target per run).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t" >&2; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; done; done

clean:
	rm -rf bin out
