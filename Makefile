# meshtrail: one Go module, one binary, one .wasm. `make help` lists targets.
GO        ?= go
TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/meshtrail/tools
export MESHTRAIL_TOOLS_DIR := $(TOOLS_DIR)
# Fixed build flags: a changed flag means a full rebuild of everything.
export CGO_ENABLED ?= 0
GOBUILD   := $(GO) build -trimpath
# The race detector needs cgo.
TESTFLAGS ?= -race -count=1 -timeout 45m

.PHONY: help build wasm image dashboards tools test test-unit demo bench fuzz vet lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/meshtrail
	$(GOBUILD) -o bin/meshtrail ./cmd/meshtrail

wasm: ## build dist/meshtrail.wasm and its sha256 (what a WasmPlugin pins)
	@mkdir -p dist
	GOOS=wasip1 GOARCH=wasm $(GOBUILD) -buildmode=c-shared -o dist/meshtrail.wasm ./wasm
	cd dist && sha256sum meshtrail.wasm > meshtrail.wasm.sha256 && cat meshtrail.wasm.sha256

VERSION ?= $(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' charts/meshtrail/Chart.yaml)
image: wasm ## container image + the .wasm as an OCI artifact into dist/oci (PUSH=host/prefix pushes, INSECURE=1 for plain HTTP)
	GOOS=linux $(GOBUILD) -o bin/linux/meshtrail ./cmd/meshtrail
	$(GO) run ./build/image --binary bin/linux/meshtrail --wasm dist/meshtrail.wasm --version v$(VERSION) --layout dist/oci \
		$(if $(PUSH),--push $(PUSH) --values-out dist/wasmplugin-values.yaml) $(if $(INSECURE),--insecure)

dashboards: ## regenerate the Grafana dashboards in charts/meshtrail/dashboards (charts/dashboards, grafana-foundation-sdk)
	$(GO) run ./charts/dashboards -out charts/meshtrail/dashboards

tools: ## install what the tests need into ~/.cache/meshtrail/tools (cached by version, shared by every checkout)
	bash test/tools/install.sh

vet:
	$(GO) vet ./...

lint: ## staticcheck over every package (installed by make tools)
	$(TOOLS_DIR)/bin/staticcheck ./...

test: tools build wasm vet lint ## install tools, vet and lint, then run every test with the race detector
	CGO_ENABLED=1 $(GO) test $(TESTFLAGS) ./...

test-unit: ## tests that need no installed tool (fast loop)
	CGO_ENABLED=1 $(GO) test -race -count=1 -short ./...

demo: build wasm ## the receiver on embedded defaults, a synthetic mesh, and the filter in an Envoy stand-in; no external server
	$(GOBUILD) -o bin/envoystandin ./test/envoystandin/cmd
	./bin/meshtrail demo
	bash internal/demo/envoy-standin.sh

bench: build ## benchmarks; figures go to bench/RESULTS.md
	bash bench/run.sh

fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	bash test/fuzz.sh $(or $(FUZZTIME),20s)

clean:
	rm -rf bin dist
