# Watashi developer tasks. `make test` is the one test command (README, .ci/run).
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s

.PHONY: test vet fmt-check build bench fuzz demo

## test: vet, gofmt check, then every test (optional suites skip only when their tool is absent
##       and the matching WATASHI_REQUIRE_* is unset; .ci/run sets them all).
test: fmt-check vet
	WATASHI_SCREENSHOT_DIR=$(CURDIR)/out/screenshots $(GO) test -count=1 -timeout 25m $(PKGS)

vet:
	$(GO) vet $(PKGS)

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
