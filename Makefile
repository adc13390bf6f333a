# IPFS Cluster in Rust — the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/debug
KUBO := deploy/local/kubo.sh
UPSTREAM := deploy/local/upstream.sh

.PHONY: build run cluster test kubo upstream clients lint fmt clean-run bench fuzz fuzz-check chaos

## build: compile every service, the launcher and the CLI (debug)
build:
	$(CARGO) build --workspace --bins

## kubo: install the pinned Kubo (the IPFS daemon) into the cache folder when missing (needs Go)
kubo:
	@$(KUBO) path >/dev/null

## upstream: install upstream IPFS Cluster v1.1.6 (the comparison oracle) into the cache folder when missing (needs Go)
upstream:
	@$(UPSTREAM) path >/dev/null

## clients: the third-party REST clients the gateway tests drive (npm + a Python venv)
clients: tests/clients/node_modules/.done tests/clients/.venv/.done

tests/clients/node_modules/.done: tests/clients/package-lock.json
	cd tests/clients && npm ci --no-audit --no-fund
	touch $@

tests/clients/.venv/.done:
	python3 -m venv tests/clients/.venv
	tests/clients/.venv/bin/pip install -q ipfscluster==0.2.0 ipfshttpclient==0.4.12
	touch $@

## run: a single-peer cluster in .run/peer0 with a local Kubo node (started when nothing answers on 127.0.0.1:5001)
run: build kubo
	BIN=$(BIN) deploy/local/run-peer.sh

## cluster: a local 3-peer cluster (PEERS=N for another size) in .run/cluster, one Kubo node each
cluster: build kubo
	BIN=$(BIN) deploy/local/run-cluster.sh

## test: every unit and multi-process test
test: kubo upstream clients
	$(CARGO) build --workspace --bins
	@rm -f $(BIN)/test-skips.txt
	@status=0; $(CARGO) test --workspace || status=$$?; \
	if [ -s $(BIN)/test-skips.txt ]; then \
	  echo "skipped: $$(wc -l < $(BIN)/test-skips.txt) tests (under CI=true they fail instead):"; \
	  sed 's/^/  /' $(BIN)/test-skips.txt; \
	fi; exit $$status

## bench: release build, then every benchmark (ours side by side with upstream v1.1.6); figures go to docs/benchmarks.md
bench: kubo upstream
	deploy/local/bench.sh

## chaos: the long fault-injection runs (kills, stops, partitions) with the independent checker
chaos: build kubo
	BIN=$(BIN) deploy/local/chaos.sh

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 60)
fuzz:
	deploy/local/fuzz.sh

## fuzz-check: compile every fuzz target (no cargo-fuzz, no sanitizer), warnings are errors
# The fuzz project is its own workspace; its check build goes to its own cache dir (not
# the main target dir, whose dependency features differ) so a warm run takes seconds.
FUZZ_CHECK_DIR ?= $(HOME)/.cache/ipfs-cluster-rs-fuzz-check
fuzz-check:
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=$(FUZZ_CHECK_DIR) \
	  $(CARGO) check --locked --manifest-path tests/fuzz/Cargo.toml --bins
	$(CARGO) fmt --manifest-path tests/fuzz/Cargo.toml -- --check

## lint: clippy and rustfmt, as CI wants them, and the fuzz targets compile
lint: fuzz-check
	$(CARGO) clippy --workspace --all-targets --features ipfs-cluster-consensus/test-doubles -- -D warnings
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

## clean-run: forget the `make run` peer and IPFS node
clean-run:
	rm -rf .run
