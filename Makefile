# The two commands of the README: `make demo` and `make test`. Both install what is missing.
PYTHON := .venv/bin/python

.PHONY: install demo test lint stop lock

install:
	bash bootstrap/setup.sh

demo: install
	$(PYTHON) -m bootstrap.demo

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -ra

stop:
	$(PYTHON) -m bootstrap.local_s3 stop

# Re-resolve every version after editing pyproject.toml; commit the new lock.
lock:
	.venv/bin/uv pip compile -q pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
