# clb — build, run, test, benchmark. `make help` lists the targets.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X clb/agent.Version=$(VERSION) -X clb/register.Version=$(VERSION)
DEV_DIR  ?= $(CURDIR)/.clb-dev
PKGS     := ./...

.PHONY: help build test bench run deps clean vet

help:
	@echo "make deps   install haproxy (apt-get) and Go modules"
	@echo "make build  build clbd, clb_register, clb_unregister into $(BIN)/"
	@echo "make run    run clbd in managed mode with local state in $(DEV_DIR)"
	@echo "make test   run every test (real haproxy, real sockets)"
	@echo "make bench  run the benchmarks and print their figures"

# Debian packages the tests and the quick start need: haproxy (2.6 on Debian 12), pgrep, openssl.
DEB_PKGS := haproxy procps openssl

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(GO) mod download

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# The quick start: a working load balancer on the embedded default config (service "web":
# haproxy on :8080 → members on port 8000), state and a generated password in $(DEV_DIR).
run: build
	mkdir -p $(DEV_DIR)
	$(BIN)/clbd --managed --state-dir $(DEV_DIR) --listen 127.0.0.1:8090

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

bench:
	mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./... | tee $(BIN)/bench.txt
	@echo; echo "Figures:"; grep "^FIGURE:" $(BIN)/bench.txt | sed "s/^FIGURE: /  /"

clean:
	rm -rf $(BIN) $(DEV_DIR)
