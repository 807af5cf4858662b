# hb_beamr: `make test` builds everything and runs the Rust and Erlang suites;
# `make demo` runs a short tour with the `beamr` CLI; `make bench` prints the benchmark table;
# `make soak` checks that a long run does not grow; `make fuzz` and `make chaos` run the
# fuzzer and the API chaos run (test/fuzz_corpus/README.md). `make` also writes the `beamr` escript
# (README, "CLI").

# Cargo builds outside the clone, so rebuilds (and CI on the same machine) are fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hb_beamr/target
# HyperBEAM's modules and the spec tests (../shared: not in this repository). When the
# directory is there (as in CI) the tests that need it run and a missing file fails them;
# when it is not, those tests are skipped, each with a printed line, and `make test` ends
# with the list.
SHARED ?= $(abspath ../shared)
ifneq ($(wildcard $(SHARED)/.),)
export HB_BEAMR_SHARED := $(SHARED)
export SPEC_TESTS_DIR := $(SHARED)/spec-tests
endif
SKIPPED := _build/test/skipped_without_shared.txt

NIF := priv/libhb_beamr_nif.so
BUILT_NIF = $(CARGO_TARGET_DIR)/release/libhb_beamr_nif.so
DEBIAN_PACKAGES := erlang-nox erlang-dev rebar3 erlang-eunit erlang-proper erlang-proper-dev wabt
ERL_RUN := erl -noshell -pa _build/default/lib/hb_beamr/ebin

.PHONY: all deps nif compile beamr test import-cycles lint check rust-test erlang-test example-test demo bench bench-load bench-hibernate bench-scale soak fuzz-gen fuzz chaos fixtures clean

all: compile beamr

# Installs Erlang, rebar3, PropEr and wabt from Debian when they are missing.
deps:
	@if ! command -v erl >/dev/null || ! command -v rebar3 >/dev/null || ! command -v wast2json >/dev/null \
	   || ! erl -noshell -eval 'case {code:lib_dir(eunit), code:lib_dir(proper)} of {{error,_},_} -> halt(1); {_,{error,_}} -> halt(1); {_,P} -> halt(case filelib:is_file(filename:join(P, "include/proper.hrl")) of true -> 0; false -> 1 end) end.'; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES); \
	  else \
	    echo "Missing Erlang/rebar3/wabt. Run: sudo apt-get update && sudo apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES)"; \
	    exit 1; \
	  fi; \
	fi

# Also run by rebar3 (pre_hook) in hb_beamr's own directory when it is another project's
# dependency; CARGO_TARGET_DIR keeps cargo's output out of that project's _build.
nif:
	@command -v cargo >/dev/null || { echo "hb_beamr: cargo (Rust) is needed to build the NIF: https://rustup.rs" >&2; exit 1; }
	cargo build --release -p hb_beamr_nif
	mkdir -p priv
	@# Renamed into place when it changed: a VM running from the old file keeps its inode
	@# (cp would rewrite the pages under it, and it would crash).
	cmp -s $(BUILT_NIF) $(NIF) || { cp $(BUILT_NIF) $(NIF).new && mv -f $(NIF).new $(NIF); }

compile: deps
	rebar3 compile

# The escript holds hb_beamr_cli and loads the rest from _build/default/lib/hb_beamr/ebin.
beamr: compile
	$(ERL_RUN) -eval 'ok = hb_beamr_cli:write_escript("beamr"), halt().'

# The loom models (native/beamr_handoff/tests/loom.rs) need --cfg loom, which rebuilds every
# dependency: they get a target directory of their own so the main one stays warm.
rust-test:
	cargo test --release -p beamr_core -p beamr_handoff
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/loom cargo test --release -p beamr_handoff --test loom

# The fuzz suites (short fixed-seed runs, corpus replay) need the module generator.
erlang-test: beamr fuzz-gen
	rm -f $(SKIPPED)
	rebar3 eunit

# examples/host_app uses hb_beamr as a rebar3 dependency through _checkouts/hb_beamr -> ../../..
# (made here, not committed); its build reruns `make nif`, an up-to-date check for cargo.
example-test: compile
	mkdir -p examples/host_app/_checkouts
	ln -sfn ../../.. examples/host_app/_checkouts/hb_beamr
	cd examples/host_app && rebar3 eunit

# Fails on an import cycle between the files of one crate (scripts/import_cycles), after
# checking that the script accepts and rejects its two fixture crates.
import-cycles: deps
	scripts/import_cycles scripts/import_cycles_fixture/acyclic
	@scripts/import_cycles scripts/import_cycles_fixture/cyclic >/dev/null; \
	  if [ $$? -ne 1 ]; then echo "scripts/import_cycles did not reject its cyclic fixture" >&2; exit 1; fi
	scripts/import_cycles native/beamr_core native/beamr_handoff native/hb_beamr_nif

# Formatting (rustfmt.toml) and clippy's default lints, warnings as errors; the few
# exceptions are #[allow]s in the code, each with its reason beside it.
lint:
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

# Cross references and types of lib/ (dialyzer's first run builds its PLT, about a
# minute, cached under ~/.cache/rebar3).
check: compile
	rebar3 xref
	rebar3 dialyzer

test: deps import-cycles lint check rust-test erlang-test example-test
ifndef HB_BEAMR_SHARED
	@echo "Skipped for want of HyperBEAM's fixtures at $(SHARED) (SHARED=DIR reads them from elsewhere):"
	@echo "  the Rust spec suite (spec-tests) and the beamr_core unit tests that read HyperBEAM's modules (each said so above)"
	@sort -u $(SKIPPED) 2>/dev/null | sed 's/^/  /'
endif

demo: beamr
	mkdir -p _build/demo
	erlc -o _build/demo demo/hb_beamr_demo.erl
	$(ERL_RUN) -pa _build/demo -eval 'hb_beamr_demo:main(), halt().'
	BEAMR_CACHE_DIR=_build/demo/cache SHARED=$(SHARED) demo/cli.sh

bench: compile
	cargo build --release -p beamr_core --example baselines
	rm -rf _build/bench && mkdir -p _build/bench
	erlc -o _build/bench bench/hb_beamr_bench.erl test/hb_beamr_test_util.erl
	$(ERL_RUN) -pa _build/bench -eval 'hb_beamr_bench:main(), halt().'

bench-load: compile
	rm -rf _build/bench && mkdir -p _build/bench
	erlc -o _build/bench bench/hb_beamr_bench_load.erl
	$(ERL_RUN) -pa _build/bench -eval 'hb_beamr_bench_load:main(), halt().'

bench-hibernate: compile
	rm -rf _build/bench && mkdir -p _build/bench
	erlc -o _build/bench bench/hb_beamr_bench_hibernate.erl bench/hb_beamr_bench_rows.erl test/hb_beamr_test_util.erl
	$(ERL_RUN) -pa _build/bench -eval 'halt(case hb_beamr_bench_hibernate:main() of ok -> 0; error -> 1 end).'

bench-scale: compile
	rm -rf _build/bench && mkdir -p _build/bench
	erlc -o _build/bench bench/hb_beamr_bench_scale.erl bench/hb_beamr_bench_rows.erl test/hb_beamr_test_util.erl
	$(ERL_RUN) -pa _build/bench -eval 'halt(case hb_beamr_bench_scale:main() of ok -> 0; error -> 1 end).'

soak: compile
	rm -rf _build/bench && mkdir -p _build/bench
	erlc -o _build/bench bench/hb_beamr_soak.erl
	$(ERL_RUN) -pa _build/bench -eval 'halt(hb_beamr_soak:main()).'

# The module generator of `make fuzz` (an example: wasm-smith is a dev-dependency).
fuzz-gen:
	cargo build --release -p beamr_core --example fuzz_modules

# FUZZ_SEED, FUZZ_MODULES or FUZZ_MINUTES, FUZZ_CORPUS (test/fuzz_corpus/README.md).
fuzz: compile fuzz-gen
	mkdir -p _build/fuzz
	erlc -o _build/fuzz test/hb_beamr_fuzz_run.erl test/hb_beamr_test_util.erl
	$(ERL_RUN) -pa _build/fuzz -eval 'halt(hb_beamr_fuzz_run:main()).'

# CHAOS_SEED, CHAOS_MINUTES (test/fuzz_corpus/README.md).
chaos: compile
	mkdir -p _build/fuzz
	erlc -o _build/fuzz test/hb_beamr_chaos.erl test/hb_beamr_test_util.erl
	$(ERL_RUN) -pa _build/fuzz -eval 'halt(hb_beamr_chaos:main()).'

# Rebuilds the Emscripten exception/longjmp fixtures with Debian's emscripten (3.1.6) and
# checks every build under node (test/fixtures/emscripten/MANIFEST.md). Not part of `test`.
fixtures:
	test/fixtures/emscripten/build.sh

clean:
	rm -rf _build priv/*.so beamr examples/host_app/_build examples/host_app/_checkouts
