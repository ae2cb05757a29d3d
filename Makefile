# The two commands of the README are `make demo` and `make test`; both install what is missing,
# the demo only what it runs on (bootstrap/local/setup.sh demo), the tests everything.
PYTHON := .venv/bin/python
# Overridable (`make ui UI_PORT=3001 DAGSTER_HOME=/tmp/home`), as tests/ui does to run beside
# a user's server; LOCAL_S3=0 when FRUITS_S3_ENDPOINT already points at a running server,
# LOCAL_CATALOG=0 when FRUITS_CATALOG_URI does.
export DAGSTER_HOME ?= $(CURDIR)/.fruits/dagster_home
UI_PORT ?= 3000
LOCAL_S3 ?= 1
LOCAL_CATALOG ?= 1

.PHONY: install install-demo demo test check ui bench stop lock

install:
	bash bootstrap/local/setup.sh test

install-demo:
	bash bootstrap/local/setup.sh demo

demo: install-demo
	$(PYTHON) -m bootstrap.sample.demo

# Test files run on TEST_WORKERS processes, each file whole on one (its module fixtures, such
# as the fake EMR cluster, are built once); the slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -ra -n $(TEST_WORKERS) --dist loadfile --durations=15

# The fast loop while editing (a few minutes): ruff, Dagster's own check of the definitions and
# the tests not marked slow. `make test` (what CI runs) is the whole suite.
check: install
	$(PYTHON) -m ruff check .
	.venv/bin/dg check defs
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The Dagster UI (`dg dev`: webserver + daemon) on http://127.0.0.1:$(UI_PORT), over the local S3
# server and the local Iceberg catalog; SIGTERM or SIGINT to its process group stops it.
ui: install-demo
	if [ "$${FRUITS_DEPLOYMENT:-local}" = local ] && [ "$(LOCAL_S3)" = 1 ]; then \
		$(PYTHON) -m bootstrap.local.local_s3 start; fi
	if [ "$${FRUITS_DEPLOYMENT:-local}" = local ] && [ "$(LOCAL_CATALOG)" = 1 ]; then \
		$(PYTHON) -m bootstrap.local.local_catalog start; fi
	$(PYTHON) -m bootstrap.local.dagster_ui --port $(UI_PORT)

# Speed and memory figures on this machine (a long run): the targets met or not, then
# bench/results.json and docs/performance.md rewritten from it.
bench: install-demo
	$(PYTHON) -m bench.run
	$(PYTHON) -m bench.report

# Both local servers, which `make demo` and `make ui` leave running to look at the outputs.
stop:
	$(PYTHON) -m bootstrap.local.local_s3 stop
	$(PYTHON) -m bootstrap.local.local_catalog stop

# Re-resolve every version after editing pyproject.toml; commit the new lock. uv keeps the
# versions already in the lock unless pyproject.toml asks otherwise (tests/test_lock.py).
# The cluster's lock is derived from it: the runtime dependencies only (no dev extra), at the
# main lock's versions, without pyspark and py4j (the cluster's Spark provides them).
LOCK ?= requirements.lock
CLUSTER_LOCK ?= requirements-emr.lock
LOCK_TARGET := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock:
	.venv/bin/uv pip compile -q pyproject.toml --extra dev $(LOCK_TARGET) -o $(LOCK)
	.venv/bin/uv pip compile -q pyproject.toml -c $(LOCK) $(LOCK_TARGET) \
		--no-emit-package pyspark --no-emit-package py4j -o $(CLUSTER_LOCK)
