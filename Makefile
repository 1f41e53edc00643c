# Raftoral developer entry points. Everything a target needs is installed into
# the repository (tools/node_modules for buf); nothing global is assumed beyond
# the Rust toolchain, Python 3 and Node.js.

CARGO ?= cargo
NPM ?= npm
BUF := tools/node_modules/.bin/buf

.PHONY: all build test test-rust lint fmt demo bench fault-run tools clean

all: build

## build: debug build of every crate and binary
build:
	$(CARGO) build --workspace --bins

## tools: install buf (npm package @bufbuild/buf) into tools/node_modules
tools: $(BUF)

$(BUF): tools/package.json
	cd tools && $(NPM) install --no-audit --no-fund --no-package-lock --loglevel=error
	@touch $(BUF)

## lint: buf lint + format check, rustfmt check, clippy with warnings denied
lint: tools
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --quiet

## fmt: format protos and Rust code
fmt: tools
	$(BUF) format -w
	$(CARGO) fmt --all

## test: install tools, build, lint, run every test
test: lint build test-rust

test-rust: build
	$(CARGO) test --workspace

## fault-run: the long seeded fault run (FAULT_MINUTES, default 10;
## FAULT_SEED=n repeats a run's schedule); see docs/TESTING.md
fault-run: build
	$(CARGO) test -p raftoral-conformance --test fault_run -- --ignored --nocapture long_fault_run

## demo: build, start a local 3-node cluster and the ping-pong app, send ping, print pong
demo:
	$(CARGO) build -p raftoral-sidecar -p ping-pong
	scripts/demo.sh

## bench: benchmarks in release mode; figures go to bench/results/ (see docs/PERFORMANCE.md)
bench:
	$(CARGO) build --release -p raftoral-bench -p raftoral-sidecar
	target/release/raftoral-bench floors --out bench/results/floors.json
	target/release/raftoral-bench commit --out bench/results/commit.json
	target/release/raftoral-bench workflows --out bench/results/workflows.json
	bench/peers/restate/run.sh > bench/results/restate.json
	bench/peers/temporal/run.sh > bench/results/temporal.json

clean:
	$(CARGO) clean
	rm -rf tools/node_modules
