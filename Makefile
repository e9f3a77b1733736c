# One command surface; CI (.ci/run) calls the same targets.
PY ?= .venv/bin/python

.PHONY: install test lint typecheck unit docs docs-serve bench bench-dispatch demo chaos

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q -e examples/provider-plugin

lint:
	$(PY) -m ruff check .
	$(dir $(PY))lint-imports

typecheck:
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml, docs/): --strict fails on a broken link or anchor and on
# a page left out of the nav; the CLI and configuration references are generated at build.
docs:
	NO_MKDOCS_2_WARNING=1 $(dir $(PY))mkdocs build --strict

docs-serve:
	NO_MKDOCS_2_WARNING=1 $(dir $(PY))mkdocs serve

# The test command: lint, types, the docs build, then every test (unit and integration).
test: lint typecheck docs unit

bench:
	$(PY) benchmarks/quota.py

# Dispatch CPU per item: 1 batch of 10,000 items vs 10,000 batches of 1 (goal: ratio <= 1.2).
bench-dispatch:
	$(PY) benchmarks/dispatch.py

# The full chaos run (2,000 jobs, kills and faults; prints one summary line), then the
# failover phase (a third of the jobs on a primary, replica and Sentinels; the primary
# SIGKILLed). `make test` runs the same tests at GENBATCH_CHAOS_JOBS=150.
CHAOS_JOBS ?= 2000
chaos:
	GENBATCH_CHAOS_JOBS=$(CHAOS_JOBS) $(PY) -m pytest tests/chaos/test_chaos.py tests/chaos/test_chaos_failover.py -q -s --timeout=0

demo:
	$(PY) -m genbatch demo
