# driftline: `make test` and `make demo` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DL := $(VENV)/bin/driftline
STAMP := $(VENV)/.installed-stamp
TEST_KAFKA_DIR := $(CURDIR)/.driftline/test-kafka
TEST_PORT ?= 39092
PYTEST_ARGS ?=

.PHONY: help install system-deps jars test unit demo bench kcat chaos clean

help:
	@echo "make test   - install everything, start a test broker, run the tests, stop the broker"
	@echo "make demo   - start Kafka and the pipeline, feed a stream, show live progress (Ctrl-C stops)"
	@echo "make unit   - only the fast unit tests and doctests (no broker)"
	@echo "make bench  - benchmarks, written to bench/results/latest.json"
	@echo "make chaos  - the chaos suite at full size: broker loss, kill -9, Kafka outage, memory soak"
	@echo "make clean  - remove the venv and local state"

# Java 17+ and Maven run and fetch the local broker; gcc builds models/*.pyx; Prometheus (with
# promtool) checks the alert rules and the dashboards in the tests. Install them from Debian when missing.
system-deps:
	@need=""; \
	if ! command -v java >/dev/null || ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then need="$$need openjdk-17-jre-headless"; fi; \
	command -v mvn >/dev/null || need="$$need maven"; \
	command -v gcc >/dev/null || need="$$need gcc"; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || need="$$need prometheus"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; fi; \
	fi

$(STAMP): pyproject.toml setup.py $(wildcard models/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP) jars

jars: $(STAMP)
	@$(PY) -c "from driftline.localkafka import ensure_jars; print('Kafka jars:', ensure_jars())"

unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not chaos" contracts ingest processors models driftline tests/unit $(PYTEST_ARGS)

# The test broker is stopped on every exit path, pass or fail (trap EXIT).
test: install
	@rm -rf $(TEST_KAFKA_DIR); \
	trap '$(DL) kafka stop --data-dir $(TEST_KAFKA_DIR) >/dev/null' EXIT; \
	$(DL) kafka start --data-dir $(TEST_KAFKA_DIR) --port $(TEST_PORT) || exit 1; \
	DRIFTLINE_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_PORT) \
	  $(PY) -m pytest -q -rs $(PYTEST_ARGS)

demo: install
	$(DL) run deploy/demo/agrawal-drift.yaml --rate 400 --serve 8000

# bench/ingest compares `driftline ingest` with Debian's kcat (librdkafka) on the same file.
kcat:
	@command -v kcat >/dev/null || { echo "installing: kcat"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; fi; }

# The bench extra (pyinstrument), and the Quix Streams peer in a venv of its own
# (bench/requirements-quix.txt says why).
QUIX_VENV := .driftline/quix-venv
$(QUIX_VENV)/.stamp: bench/requirements-quix.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install -q -r bench/requirements-quix.txt
	touch $@

bench: install kcat $(QUIX_VENV)/.stamp
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

# The chaos suite at full size (`make test` runs it bounded): its own brokers where it kills
# them, a test broker for the rest, stopped on every exit path.
chaos: install
	@rm -rf $(TEST_KAFKA_DIR); \
	trap '$(DL) kafka stop --data-dir $(TEST_KAFKA_DIR) >/dev/null' EXIT; \
	$(DL) kafka start --data-dir $(TEST_KAFKA_DIR) --port $(TEST_PORT) || exit 1; \
	DRIFTLINE_CHAOS_FULL=1 DRIFTLINE_CHAOS_EVENTS=200000 DRIFTLINE_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_PORT) \
	  $(PY) -m pytest -q -rsx -m chaos --timeout 3600 tests/chaos $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .driftline *.egg-info
