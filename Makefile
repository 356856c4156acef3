# tracehouse: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The JCS library of the JavaScript export verifier (docs/verifiers/verify_export.js), where npm is
NODE_JCS := $(if $(shell command -v npm),build/node/node_modules/canonicalize/package.json)

.PHONY: setup run kafka test test-fast fuzz chaos bench bench-ingest bench-reads bench-exports lint clean

setup: $(STAMP) $(NODE_JCS)

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(NODE_JCS):
	npm install --silent --no-audit --no-fund --prefix build/node canonicalize@2.1.0

run: setup
	$(BIN)/tracehouse run

# An Apache Kafka broker on a free loopback port until Ctrl-C (needs Java 17; its jars, ~43 MB, are
# fetched by Maven into build/kafka/lib on first use, by this or by the tests). KAFKA_PORT picks the port.
kafka: setup
	$(BIN)/python -m tests.support.kafka_broker

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The schemathesis contract run with more examples per operation (make test runs it with 12).
FUZZ_EXAMPLES ?= 200
fuzz: setup
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/e2e/test_openapi_contract.py

# The whole-box chaos test with more kills (make test runs it with 3).
CHAOS_KILLS ?= 10
chaos: setup
	CHAOS_KILLS=$(CHAOS_KILLS) $(BIN)/python -m pytest -q -s tests/e2e/test_whole_box_crash.py

# The ingest bench (rates next to a raw-produce baseline), the read bench (1M and 10M events), then
# the export bench (1M events).
bench: bench-ingest bench-reads bench-exports

bench-ingest: setup
	$(BIN)/python -m bench

bench-reads: setup
	$(BIN)/python -m bench.reads

bench-exports: setup
	$(BIN)/python -m bench.exports

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf .tracehouse
