# agent-host — the two set-up commands are `make demo` and `make test`;
# both work on a fresh machine (they install the wasm32-wasip2 target and build the guests).

CARGO      ?= cargo
GUEST_DIR  := target/guests
GUEST_OUT  := $(GUEST_DIR)/wasm32-wasip2/release
GUEST_ARGS := --release --target wasm32-wasip2 --target-dir $(GUEST_DIR)

.PHONY: wasm-target setup guest-tools guests python-guests ts-guests host demo test bench fuzz fmt clippy

## Install the guest target: all the demo needs besides Rust and python3.
wasm-target:
	rustup target add wasm32-wasip2

## Also install the Debian and PyPI tools the tests and benchmarks use (idempotent).
setup: wasm-target
	./scripts/install-tools.sh

## Build the example agents to wasm32-wasip2 components.
guests: wasm-target
	$(CARGO) build $(GUEST_ARGS) -p hello -p incident-responder -p triage -p ops-assistant

## Install only what builds Python and TypeScript agents (componentize-py,
## Node.js and npm; jco comes with npm when first needed).
guest-tools:
	./scripts/install-tools.sh --guests-only

## Build the Python example agents with componentize-py; each is rebuilt only
## when its inputs change.
python-guests: guest-tools
	./scripts/build-python-agent.py examples/hello-python $(GUEST_DIR)/python/hello.wasm
	./scripts/build-python-agent.py examples/triage-python $(GUEST_DIR)/python/triage.wasm

## Build the TypeScript example agent with jco componentize (ComponentizeJS).
ts-guests: guest-tools
	./scripts/build-ts-agent.sh examples/hello-ts $(GUEST_DIR)/ts/hello.wasm

## Build the host binary.
host:
	$(CARGO) build -p agent-host

## Main job: start the examples' local endpoints (model and MCP stand-ins
## among them) and run the example agents, in Rust, Python and TypeScript.
demo: guests python-guests ts-guests host
	./scripts/demo.sh

## The whole test suite (guest test programs are built by tests/build.rs).
test: setup
	$(CARGO) test

## Every benchmark scenario against its baseline in one run (release build):
## writes bench/results.json, bench/results.md, bench/latency.svg and the
## README's table. BENCH_SECONDS is the length of each wrk run.
bench: setup
	$(CARGO) build --release -p agent-host -p agent-host-bench
	./target/release/agent-host-bench --out bench --readme README.md --http-seconds $(BENCH_SECONDS)

BENCH_SECONDS ?= 10

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

## Fuzz the manifest parser and the outgoing-HTTP allowlist, FUZZ_SECONDS each
## (cargo-fuzz/libFuzzer; needs RUSTC_BOOTSTRAP for its -Z flags on stable).
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none manifest -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none http_allowlist -- -max_total_time=$(FUZZ_SECONDS)
