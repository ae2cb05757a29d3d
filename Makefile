# The two commands of the README are `make demo` and `make test`; both install what is missing.
PYTHON := .venv/bin/python
export DAGSTER_HOME := $(CURDIR)/.fruits/dagster_home

.PHONY: install demo test ui bench stop lock

install:
	bash bootstrap/setup.sh

demo: install
	$(PYTHON) -m bootstrap.demo

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -ra

# The Dagster UI (webserver + daemon) on http://127.0.0.1:3000, over the local S3 server.
ui: install
	if [ "$${FRUITS_DEPLOYMENT:-local}" = local ]; then $(PYTHON) -m bootstrap.local_s3 start; fi
	$(PYTHON) -m bootstrap.dagster_home
	.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Speed and memory figures on this machine (about 10 min): a table and bench/results.json.
bench: install
	$(PYTHON) -m bench.run

stop:
	$(PYTHON) -m bootstrap.local_s3 stop

# Re-resolve every version after editing pyproject.toml; commit the new lock.
lock:
	.venv/bin/uv pip compile -q pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
