# Raftoral developer entry points. Everything a target needs is installed into
# the repository (tools/node_modules for buf); nothing global is assumed beyond
# the Rust toolchain, Python 3 and Node.js.

CARGO ?= cargo
NPM ?= npm
BUF := tools/node_modules/.bin/buf
PYTHON ?= python3
PY := sdk-python
# Pinned tools (maturin, ruff, mypy, pytest) live in a venv inside the repo.
PY_TOOLS := $(PY)/.venv/.installed

# kubectl (with kustomize) and an offline Kubernetes schema validator, pinned
# in tools/k8s-requirements.txt, in a venv inside the repo.
K8S_VENV := tools/.k8s-venv
KUBE_APISERVER := .tools/kube-test-apiserver
K8S_TOOLS := $(K8S_VENV)/.installed

NODE_SDK := sdk-node
# Pinned tools (@napi-rs/cli, typescript, biome) live in sdk-node/node_modules.
NODE_TOOLS := $(NODE_SDK)/node_modules/.installed
# Tarballs from `make node`, and the fresh project `make test-node` installs them into.
NODE_PACK := target/node-pack
NODE_FRESH := target/node-test

.PHONY: all build test k8s-check compose-check kube-apiserver test-rust package lint fmt demo bench tools clean python test-python lint-python conformance conformance-python raw-worker python-venv-test node node-bindings test-node conformance-node lint-node fault-run simulate bench-sdks bench-sdks-setup

all: build

## build: debug build of every crate and binary
build:
	$(CARGO) build --workspace --bins

## tools: install buf (npm package @bufbuild/buf) into tools/node_modules
tools: $(BUF)

$(BUF): tools/package.json
	cd tools && $(NPM) install --no-audit --no-fund --no-package-lock --loglevel=error
	@touch $(BUF)

## lint: buf lint + format + breaking check, rustfmt check, the layout check, clippy with warnings denied, Python and Node lint
lint: tools lint-python lint-node
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@# Wire compatibility with the protocol as it was one commit ago (until a
	@# release tag exists); a clone without that commit skips the check.
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking skipped: no previous commit in this clone"; fi
	$(CARGO) fmt --all -- --check
	@# No two files import each other; no layer imports one above it.
	$(PYTHON) scripts/check_layout.py
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --quiet

## fmt: format protos and Rust code
fmt: tools
	$(BUF) format -w
	$(CARGO) fmt --all

## test: install tools, build, lint, run every test, then the conformance matrix
test: lint build k8s-check compose-check test-rust package test-python test-node conformance

$(K8S_TOOLS): tools/k8s-requirements.txt
	$(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/k8s-requirements.txt
	@touch $@

## k8s-check: render every kustomization in k8s/, validate it strictly against
## the Kubernetes API schema (offline), and check the sidecar's env vars and
## ports against `raftoral serve --help`
k8s-check: build $(K8S_TOOLS)
	$(K8S_VENV)/bin/python scripts/check_k8s.py $(K8S_VENV)/bin/kubectl $(K8S_VENV)/bin/kubernetes-validate target/debug/raftoral

## compose-check: validate compose.yaml against the Compose specification
## (compose-go, the loader docker compose uses; built once into .tools) and
## check it against `raftoral serve --help` (scripts/check_compose.py)
COMPOSE_CHECK := .tools/compose-check
$(COMPOSE_CHECK): scripts/compose-check/go.mod scripts/compose-check/go.sum scripts/compose-check/main.go
	cd scripts/compose-check && go build -o ../../$(COMPOSE_CHECK) .
compose-check: build $(COMPOSE_CHECK)
	$(PYTHON) scripts/check_compose.py $(COMPOSE_CHECK) target/debug/raftoral

## package: the publishable crates package and build from their packaged
## sources (what `cargo add raftoral-client` gets)
# Verified in a target dir of its own: cargo takes a packaged crate of an
# unchanged version for immutable (it comes from a registry) and would reuse
# a build of older sources; the raftoral crates are rebuilt there every time.
# Cargo also keeps the sources it unpacked from the temporary registry of an
# earlier run under CARGO_HOME and reuses them for the same version: they go.
PACKAGE_TARGET := target/package-verify
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
package:
	rm -rf $(PACKAGE_TARGET)/package $(PACKAGE_TARGET)/debug/.fingerprint/raftoral-* $(PACKAGE_TARGET)/debug/build/raftoral-*
	rm -rf $(foreach c,raftoral raftoral-proto raftoral-client raftoral-embedded,$(CARGO_HOME_DIR)/registry/src/*/$(c)-$(VERSION))
	CARGO_TARGET_DIR=$(PACKAGE_TARGET) $(CARGO) package --quiet -p raftoral-proto -p raftoral -p raftoral-client -p raftoral-embedded --allow-dirty

# The conformance files that run once per worker (scripts/conformance_matrix.py,
# `make conformance`); test-rust runs every other test, so none runs twice.
MATRIX_FILES := single_node cluster_workflows app_stream cluster mixed errors helpers timers cancel events status awakeables races children calls mixed_messages
CONFORMANCE_OTHER := $(filter-out $(MATRIX_FILES),$(basename $(notdir $(wildcard conformance/tests/*.rs))))

# kubernetes_real.rs runs discovery against a real kube-apiserver (built
# once into .tools) with kubectl from the k8s-check tools.
test-rust: build $(KUBE_APISERVER) $(K8S_TOOLS)
	$(CARGO) test --workspace --exclude raftoral-conformance
	RAFTORAL_KUBE_APISERVER=$(CURDIR)/$(KUBE_APISERVER) RAFTORAL_KUBECTL=$(CURDIR)/$(K8S_VENV)/bin/kubectl \
	$(CARGO) test -p raftoral-conformance --lib --bins $(addprefix --test ,$(CONFORMANCE_OTHER))

## kube-apiserver: a real Kubernetes API server (k8s.io/kubernetes
## v1.34.3's kube-apiserver over an embedded etcd; conformance/kube-apiserver)
## for conformance/tests/kubernetes_real.rs, built once into .tools (about
## 7 minutes on 2 cores from an empty Go cache)
$(KUBE_APISERVER): conformance/kube-apiserver/go.mod conformance/kube-apiserver/go.sum conformance/kube-apiserver/main.go
	cd conformance/kube-apiserver && go build -o ../../$(KUBE_APISERVER) .
kube-apiserver: $(KUBE_APISERVER)

$(PY_TOOLS): $(PY)/requirements-dev.txt $(PY)/requirements-test.txt
	$(PYTHON) -m venv $(PY)/.venv
	$(PY)/.venv/bin/pip install -q --disable-pip-version-check -r $(PY)/requirements-dev.txt
	@touch $@

## python: build the Python SDK wheel (abi3, manylinux-checked) into sdk-python/dist
python: $(PY_TOOLS)
	rm -rf $(PY)/dist
	@# The dev profile: the tests need no release build, and this one shares
	@# the workspace's compiled dependencies (deps are built with opt-level 1).
	cd $(PY) && .venv/bin/maturin build --profile dev --out dist

# The built wheel installed into a fresh venv: what `pip install` gives.
python-venv-test: python
	rm -rf $(PY)/.venv-test
	$(PYTHON) -m venv $(PY)/.venv-test
	$(PY)/.venv-test/bin/pip install -q --disable-pip-version-check $(PY)/dist/*.whl -r $(PY)/requirements-test.txt

## test-python: install the built wheel into a fresh venv and run pytest against real sidecars
test-python: python-venv-test
	$(CARGO) build --workspace --bins
	cd $(PY) && .venv-test/bin/python -m pytest -q -p no:cacheprovider
	@# The shipped stub of the native module must match the module itself.
	cd $(PY) && PYTHONPATH=$$(echo .venv-test/lib/python3*/site-packages) \
		.venv/bin/python -m mypy.stubtest raftoral._core --allowlist stubtest-allowlist.txt

## conformance: the matrix: every worker-centred scenario once per worker
## (RAFTORAL_CONFORMANCE_WORKERS=rust,python,raw,node; default every worker in
## the tree); table in target/conformance/matrix.md. See docs/TESTING.md.
conformance: build python-venv-test raw-worker
	RAFTORAL_CONFORMANCE_FILES="$(MATRIX_FILES)" CARGO="$(CARGO)" $(PYTHON) scripts/conformance_matrix.py

## conformance-python: the matrix with the Python SDK's worker only
conformance-python:
	$(MAKE) --no-print-directory conformance RAFTORAL_CONFORMANCE_WORKERS=python

# The raw worker: Python on stubs that grpcio-tools generates from proto/ at
# build time (git-ignored), in its own venv with pinned versions; no SDK.
RAW := conformance/raw-python
RAW_VENV := $(RAW)/.venv/.installed
$(RAW_VENV): $(RAW)/requirements.txt
	rm -rf $(RAW)/.venv
	$(PYTHON) -m venv $(RAW)/.venv
	$(RAW)/.venv/bin/pip install -q --disable-pip-version-check -r $(RAW)/requirements.txt
	@touch $@

$(RAW)/gen/.generated: $(RAW_VENV) $(wildcard proto/raftoral/sidecar/v1/*.proto)
	rm -rf $(RAW)/gen
	mkdir -p $(RAW)/gen
	$(RAW)/.venv/bin/python -m grpc_tools.protoc -Iproto --python_out=$(RAW)/gen \
		--grpc_python_out=$(RAW)/gen --pyi_out=$(RAW)/gen proto/raftoral/sidecar/v1/failure.proto \
		proto/raftoral/sidecar/v1/app.proto proto/raftoral/sidecar/v1/workflow_service.proto
	@touch $@

## raw-worker: venv and generated stubs of the raw (SDK-less) conformance worker
raw-worker: $(RAW)/gen/.generated

## lint-python: ruff check, ruff format --check, mypy --strict (package, tests, example)
lint-python: $(PY_TOOLS)
	cd $(PY) && .venv/bin/ruff check . ../examples/ping-pong-python ../bench/workers
	cd $(PY) && .venv/bin/ruff format --check . ../examples/ping-pong-python ../bench/workers
	cd $(PY) && .venv/bin/mypy --strict python/raftoral tests conformance ../examples/ping-pong-python ../bench/workers
	@# The raw worker and the matrix runner, with the SDK's settings; the raw
	@# worker's generated stubs and grpc are untyped, so they are not followed.
	$(PY)/.venv/bin/ruff check --config $(PY)/pyproject.toml $(RAW)/worker.py $(RAW)/client.py scripts/conformance_matrix.py scripts/check_k8s.py scripts/check_layout.py scripts/check_compose.py
	$(PY)/.venv/bin/ruff format --check --config $(PY)/pyproject.toml $(RAW)/worker.py $(RAW)/client.py scripts/conformance_matrix.py scripts/check_k8s.py scripts/check_layout.py scripts/check_compose.py
	$(PY)/.venv/bin/mypy --strict --python-version 3.10 --follow-imports=skip --ignore-missing-imports \
		$(RAW)/worker.py $(RAW)/client.py scripts/conformance_matrix.py scripts/check_k8s.py scripts/check_layout.py scripts/check_compose.py

$(NODE_TOOLS): $(NODE_SDK)/package.json
	cd $(NODE_SDK) && $(NPM) install --no-audit --no-fund --no-package-lock --loglevel=error
	@touch $@

## node: build the Node addon (debug), its TypeScript layer, and the npm tarballs into target/node-pack
# The addon is a plain `cargo build`, sharing target/debug with the workspace
# (`napi build` passes --target and would build every dependency again); the
# loader and types it generates are committed, see node-bindings.
# NODE_PROFILE=release builds the addon for the benchmarks (bench-sdks).
NODE_PROFILE ?= debug
node: $(NODE_TOOLS)
	$(CARGO) build -p raftoral-node $(if $(filter release,$(NODE_PROFILE)),--release,)
	cp target/$(NODE_PROFILE)/libraftoral_node.so $(NODE_SDK)/npm/linux-x64-gnu/raftoral.linux-x64-gnu.node
	cd $(NODE_SDK) && rm -rf dist && node_modules/.bin/tsc -p tsconfig.json
	rm -rf $(NODE_PACK) && mkdir -p $(NODE_PACK)
	cd $(NODE_SDK) && $(NPM) pack --silent --pack-destination $(CURDIR)/$(NODE_PACK)
	cd $(NODE_SDK)/npm/linux-x64-gnu && $(NPM) pack --silent --pack-destination $(CURDIR)/$(NODE_PACK)

## node-bindings: regenerate sdk-node/native/index.{js,d.ts} with napi build (after changing sdk-node/src)
node-bindings: $(NODE_TOOLS)
	cd $(NODE_SDK) && node_modules/.bin/napi build --platform -o native --js index.js --dts index.d.ts
	rm -f $(NODE_SDK)/native/*.node

## test-node: install the tarballs into a fresh project and run `node --test` against real sidecars
test-node: node
	$(CARGO) build -p raftoral-sidecar
	rm -rf $(NODE_FRESH) && mkdir -p $(NODE_FRESH)
	cp -r $(NODE_SDK)/tests $(NODE_FRESH)/tests
	mkdir -p $(NODE_FRESH)/example && cp examples/ping-pong-node/main.ts $(NODE_FRESH)/example/
	cp -r $(NODE_SDK)/conformance $(NODE_FRESH)/conformance
	echo '{"name": "raftoral-node-test", "private": true, "type": "module"}' > $(NODE_FRESH)/package.json
	cd $(NODE_FRESH) && $(NPM) install --no-audit --no-fund --no-package-lock --loglevel=error \
		$(CURDIR)/$(NODE_PACK)/*.tgz typescript@5.9.3 @types/node@20.19.25
	cd $(NODE_FRESH) && RAFTORAL_BIN_DIR=$(CURDIR)/target/debug TSC=node_modules/typescript/bin/tsc \
		node --test --test-concurrency=2

## conformance-node: the matrix with the Node SDK's worker only (after test-node,
## which installs the tarballs into the fresh project it runs from)
conformance-node:
	$(MAKE) --no-print-directory conformance RAFTORAL_CONFORMANCE_WORKERS=node

## lint-node: biome (lint + format check, biome.json) and tsc --strict on the TypeScript layer
lint-node: $(NODE_TOOLS)
	@# One version for the crates, the wheel and the npm packages.
	node scripts/check_versions.mjs
	$(NODE_SDK)/node_modules/.bin/biome ci .
	cd $(NODE_SDK) && node_modules/.bin/tsc -p tsconfig.json --noEmit

## fault-run: the long seeded fault run (FAULT_MINUTES, default 10;
## FAULT_SEED=n repeats a run's schedule); see docs/TESTING.md
fault-run: build
	$(CARGO) test -p raftoral-conformance --test fault_run -- --ignored --nocapture long_fault_run

## simulate: the deterministic simulation's seeds, optimized build (SEEDS,
## default 10000; FIRST=s starts elsewhere; SEED=s replays one with its
## trace); see docs/TESTING.md. `make test` runs 1,000 in the debug build.
simulate:
	RAFTORAL_SIM_SEEDS=$(or $(SEEDS),10000) $(if $(FIRST),RAFTORAL_SIM_FIRST=$(FIRST)) \
	$(if $(SEED),RAFTORAL_SIM_SEED=$(SEED)) \
	$(CARGO) test --release -p raftoral --lib simulation::tests::seeds -- --nocapture

## demo: build, start a local 3-node cluster and the ping-pong app, send ping, print pong
demo:
	$(CARGO) build -p raftoral-sidecar -p ping-pong
	scripts/demo.sh

# Finished workflows the growth bench ends with (the goal in issue 16 is 1 M).
GROWTH_WORKFLOWS ?= 1000000

## bench: benchmarks in release mode; figures go to bench/results/ (see docs/PERFORMANCE.md)
bench: bench-sdks-setup
	$(CARGO) build --release -p raftoral-bench -p raftoral-sidecar
	target/release/raftoral-bench floors --out bench/results/floors.json
	target/release/raftoral-bench commit --out bench/results/commit.json
	target/release/raftoral-bench workflows --out bench/results/workflows.json
	$(BENCH_SDKS)
	target/release/raftoral-bench tls --out bench/results/tls.json
	target/release/raftoral-bench timers --out bench/results/timers.json
	target/release/raftoral-bench signals --out bench/results/signals.json
	target/release/raftoral-bench children --out bench/results/children.json
	target/release/raftoral-bench growth --workflows $(GROWTH_WORKFLOWS) --out bench/results/growth.json
	bench/peers/restate/run.sh > bench/results/restate.json
	bench/peers/temporal/run.sh > bench/results/temporal.json

# The SDKs as users get them, built in release for the benchmarks: the wheel
# in a venv of its own, the npm tarballs in a project of their own (with the
# bench worker copied in, so `@raftoral/client` resolves from there).
BENCH_DIR := target/bench
BENCH_SDKS = target/release/raftoral-bench sdks --python $(BENCH_DIR)/python/bin/python \
	--node-project $(BENCH_DIR)/node --out bench/results/sdks.json
bench-sdks-setup: $(PY_TOOLS)
	rm -rf $(BENCH_DIR)/wheel $(BENCH_DIR)/python $(BENCH_DIR)/node
	cd $(PY) && .venv/bin/maturin build --release --out $(CURDIR)/$(BENCH_DIR)/wheel
	$(PYTHON) -m venv $(BENCH_DIR)/python
	$(BENCH_DIR)/python/bin/pip install -q --disable-pip-version-check $(BENCH_DIR)/wheel/*.whl
	$(MAKE) --no-print-directory node NODE_PROFILE=release NODE_PACK=$(BENCH_DIR)/node-pack
	mkdir -p $(BENCH_DIR)/node
	echo '{"name": "raftoral-bench-node", "private": true, "type": "module"}' > $(BENCH_DIR)/node/package.json
	cd $(BENCH_DIR)/node && $(NPM) install --no-audit --no-fund --no-package-lock --loglevel=error \
		$(CURDIR)/$(BENCH_DIR)/node-pack/*.tgz
	cp bench/workers/worker.mjs $(BENCH_DIR)/node/

## bench-sdks: only the SDK comparison part of `make bench` (Rust, Python, Node workers)
bench-sdks: bench-sdks-setup
	$(CARGO) build --release -p raftoral-bench -p raftoral-sidecar
	$(BENCH_SDKS)

clean:
	$(CARGO) clean
	rm -rf tools/node_modules $(PY)/.venv $(PY)/.venv-test $(PY)/dist $(NODE_SDK)/node_modules $(NODE_SDK)/dist
	rm -rf $(RAW)/.venv $(RAW)/gen
	rm -f $(NODE_SDK)/native/*.node
