# Two entry points, each setting everything up on a fresh machine (a venv in .venv):
#   make demo   the main job: benchmark table + training demo, default CPU backend, quick mode
#   make test   lint, type check + the whole test suite
# torch is pinned by constraints.txt (an unpinned torch downloads several GB of CUDA wheels).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test venv

venv:
	$(PYTHON) -m venv $(VENV)

demo: venv
	$(PIP) -e ".[bench]"
	$(PY) -m benchmarks --quick
	$(PY) -m benchmarks.train --quick

test: venv
	$(PIP) -e ".[test]"
	$(PY) -m ruff check xmargin tests benchmarks kernels
	$(PY) -m mypy
	$(PY) -m pytest -q
