# The two commands of the README: `make run` (set up, then the main job) and
# `make test` (set up, then every check CI runs). Both are idempotent.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: setup bench-setup run test lint rust-test loom py-test bench bench-check compare bench-rust bench-artifacts clean

setup:
	./scripts/setup.sh

run: setup
	$(BIN)/zeta-fast demo --out demo-output

test: bench-setup lint rust-test loom py-test bench-check bench-artifacts

lint:
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings
	$(BIN)/ruff check python tests benches scripts
	$(BIN)/ruff format --check python tests benches scripts
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest zeta_fast._core --allowlist tests/stubtest_allowlist.txt
	$(BIN)/mkdocs build --strict --site-dir target/site

rust-test:
	if command -v cargo-nextest >/dev/null; then cargo nextest run --no-fail-fast; else cargo test; fi

# loom explores every interleaving (up to 3 preemptions) of the lock-free
# structures' races (window, balance, breaker, remote view, retry budget,
# replica health, key registration, Hogwild weights); its own target dir
# keeps the cfg(loom) build apart from the others.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_window --test loom_balance --test loom_breaker --test loom_remote --test loom_retry --test loom_replica_health \
		--test loom_registry --test loom_learned

py-test:
	$(BIN)/pytest -q tests benches

# The bench extra (LiteLLM, measured side by side) is installed only here, with
# the client SDKs the gateway is tested through (clients) and redis (scale-out tests).
bench-setup:
	EXTRAS="test dev local plots parquet redis clients bench" ./scripts/setup.sh

bench: bench-setup
	$(BIN)/pytest benches --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name

# The benchmark gate: key ratios against in-run references (a tuned
# pure-Python loop, NumPy, the bare core, LiteLLM), failing below the floors
# of benches/floors.toml; the figures are written to target/bench/check.json.
bench-check: bench-setup
	$(BIN)/python -m benches.check --json target/bench/check.json

compare: bench-setup
	$(BIN)/python -m benches.compare

bench-rust:
	cargo bench --bench scoring

# Benchmark results kept as CI artifacts (never a gate: the gate is
# bench-check): criterion's quick pass over the Rust hot path in
# target/criterion, asv's quick pass in target/bench/asv/results.
bench-artifacts: bench-setup
	cargo bench --bench scoring -- --quick --noplot
	cd benches/asv && $(abspath $(BIN))/asv machine --yes --machine ci >/dev/null && \
		$(abspath $(BIN))/asv run --python=same --quick --machine ci \
		--set-commit-hash $$(git rev-parse HEAD)

clean:
	rm -rf $(VENV) target python/zeta_fast/*.so
