# Watashi developer tasks. `make test` is the one test command (README, .ci/run).
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s

IMAGE   ?= watashi:dev
# docker, or podman (same build syntax).
CONTAINER ?= docker

.PHONY: test vet fmt-check build bench fuzz demo image

## test: vet, gofmt check, then every test (optional suites skip only when their tool is absent
##       and the matching WATASHI_REQUIRE_* is unset; .ci/run sets them all).
##       deploy/test is a module of its own (Helm and Kubernetes stay out of go.mod): the
##       Dockerfile, Compose file and Helm chart checks.
test: fmt-check vet
	WATASHI_SCREENSHOT_DIR=$(CURDIR)/out/screenshots $(GO) test -count=1 -timeout 25m $(PKGS)
	cd deploy/test && $(GO) test -count=1 -timeout 10m ./...

vet:
	$(GO) vet $(PKGS)
	cd deploy/test && $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

build:
	$(GO) build -o bin/watashi ./cmd/watashi

## bench: the benchmarks quoted in the issue notes (5 runs each; feed to benchstat).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

demo:
	$(GO) run ./cmd/watashi demo

## image: the container image (Dockerfile: static binary on scratch, non-root, no shell).
image:
	@command -v $(CONTAINER) >/dev/null || { echo "$(CONTAINER) not found (set CONTAINER=podman?)"; exit 1; }
	$(CONTAINER) build -t $(IMAGE) .
