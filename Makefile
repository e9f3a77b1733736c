# One command surface; CI (.ci/run) calls the same targets.
PY ?= .venv/bin/python

.PHONY: install test lint typecheck unit bench demo

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"

lint:
	$(PY) -m ruff check .

typecheck:
	$(PY) -m mypy

unit:
	$(PY) -m pytest -q

# The test command: lint, types, then every test (unit and integration).
test: lint typecheck unit

bench:
	$(PY) benchmarks/quota.py

demo:
	$(PY) -m genbatch demo
