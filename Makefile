# clb — build, run, test, benchmark. `make help` lists the targets.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X clb/agent.Version=$(VERSION) -X clb/register.Version=$(VERSION)
DEV_DIR  ?= $(CURDIR)/.clb-dev
PKGS     := ./...

.PHONY: help build test test-deps bench run deps clean vet deb check-packages check-cloud-init user-data

help:
	@echo "make deps   install haproxy, pgrep, openssl (apt-get) and Go modules; make test adds etcd, lintian, cloud-init..."
	@echo "make build  build clbd, clb_register, clb_unregister into $(BIN)/"
	@echo "make run    run clbd in managed mode with local state in $(DEV_DIR)"
	@echo "make test   run every test (real haproxy, real sockets)"
	@echo "make bench  run the benchmarks and print their figures"
	@echo "make deb    build dist/clb-server_*.deb and dist/clb-client_*.deb (nfpm)"
	@echo "make user-data CLB_DEB_URL=... CLB_SERVER=...  cloud-init user-data in build/cloud-init/"

# Debian packages. The quick start needs haproxy (2.6 on Debian 12), pgrep and openssl; the
# tests also need etcd (the etcd store's tests start their own), and the package and
# cloud-init checks lintian, systemd-analyze (systemd), man, curl and cloud-init, and the
# failover test keepalived and iproute2 (its unit starts only once keepalived.conf exists,
# which the test does not write: it runs its own keepalived in network namespaces), the web
# console's browser test Debian's chromium (headless, driven by chromedp), and the AWS
# endpoint's tests Debian's real AWS clients (boto 2, boto3, the AWS CLI, libcloud). `make deps`
# installs the first set, `make test` the second (so a quick start does not get an etcd
# service), each only what is missing (apt-get needs root then).
DEB_PKGS      := haproxy procps openssl
DEB_TEST_PKGS := lintian systemd man-db curl cloud-init etcd-server keepalived iproute2 chromium python3-boto python3-boto3 awscli python3-libcloud

define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(DEB_PKGS))
	$(GO) mod download

test-deps: deps
	$(call apt_install,$(DEB_TEST_PKGS))

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# The quick start: a working load balancer on the embedded default config (service "web":
# haproxy on :8080 → members on port 8000), state and a generated password in $(DEV_DIR).
run: build
	mkdir -p $(DEV_DIR)
	$(BIN)/clbd --managed --state-dir $(DEV_DIR) --listen 127.0.0.1:8090

test: test-deps check-cloud-init check-packages
	$(GO) mod tidy -diff
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# Packages: nfpm at a fixed version through `go run` (not in go.mod); DEB_VERSION guarded there.
deb:
	GO=$(GO) packaging/build-deb.sh

# lintian, systemd-analyze verify, dpkg -i, clbd check, a short run, dpkg -P (root; CI machine).
check-packages: deb
	packaging/check.sh

# Every cloud-config passes `cloud-init schema`, raw and with the variables filled in, and the
# multipart user-data builds.
check-cloud-init:
	@for f in cloud-init/*.yaml cloud-init/keepalived/*.yaml; do cloud-init schema -c $$f || exit 1; done
	CLB_DEB_URL=http://deb.invalid/clb CLB_SERVER=lb.invalid CLB_PASSWORD=check-cloud-init \
	  scripts/cloud-init-userdata -o build/cloud-init-check cloud-init/member-app.sh:x-shellscript
	@test "$$(grep -c '^Content-Type: text/x-shellscript' build/cloud-init-check/member.mime)" = 1
	@rm -rf build/cloud-init-check

user-data:
	scripts/cloud-init-userdata -o build/cloud-init $(USER_DATA_PARTS)

# The benchmarks of package agent (real clbd, haproxy and backends; about 5 minutes on 2 cores),
# printed as a table (also in $(BIN)/bench.md). BENCH=regexp selects some, SAMPLES sets the
# latency samples. Figures and how to read them: docs/benchmarks.md.
bench:
	GO=$(GO) BENCH='$(or $(BENCH),.)' SAMPLES=$(or $(SAMPLES),100) scripts/bench $(BIN)/bench.txt

clean:
	rm -rf $(BIN) $(DEV_DIR) build dist
