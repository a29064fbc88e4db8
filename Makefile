# greenroom — the two commands are `make run` and `make test`; everything else they need
# (a virtualenv, the Python packages, a real Cassandra node for the tests) they set up.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint clean bench-runtime bench-storage bench-ws-libs bench-gateway bench-cluster bench-abuse bench-reactions bench-interactions load-gateway cassandra-jars jaeger-bin

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "greenroom needs Python >= 3.11 on PATH" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# discord.js for the interop test (tests/gateway/test_discordjs.py), exactly as the
# lockfile says; reinstalled when package.json or the lockfile changes.
JS_DIR   := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.greenroom-installed

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
		echo "greenroom's tests need Node >= 18 and npm on PATH (the discord.js interop test)" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 18 ? 1 : 0)' || { \
		echo "greenroom's tests need Node >= 18, found $$(node --version)" >&2; exit 1; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund --fetch-retries=5
	touch $(JS_STAMP)

run: $(STAMP)
	$(VENV)/bin/greenroom run $(ARGS)

test: $(STAMP) $(JS_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench-runtime: $(STAMP)
	$(PY) loadtest/bench_runtime.py

clean:
	rm -rf $(VENV) .cache $(JS_DIR)/node_modules

bench-storage: $(STAMP)
	$(PY) loadtest/bench_storage.py $(ARGS)

cassandra-jars: $(STAMP)
	$(PY) -m tests.services.cassandra fetch

# Jaeger for the end-to-end tracing test, built from its Go module into ~/.cache/greenroom/jaeger
# (`make test` builds it itself when missing; this target does it ahead of time).
jaeger-bin: $(STAMP)
	$(PY) -m tests.services.jaeger fetch

bench-ws-libs: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) loadtest/bench_ws_libs.py $(ARGS)

bench-gateway: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) loadtest/bench_gateway.py $(ARGS)

bench-cluster: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) loadtest/bench_cluster.py $(ARGS)

bench-abuse: $(STAMP)
	$(PY) -m loadtest.bench_abuse $(ARGS)

# a reaction storm on one message while the channel's messages flow (rate limits on)
bench-reactions: $(STAMP)
	$(PY) -m loadtest.bench_reactions $(ARGS)

# users invoke a command a bot answers (type 4), against plain posts in the same run
bench-interactions: $(STAMP)
	$(PY) -m loadtest.bench_interactions $(ARGS)

load-gateway: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) loadtest/gateway_load.py $(ARGS)
