# Developer entry points. Each target creates .venv and installs what it needs on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck pytest bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

## demo: train a teacher and an SQAKD student on the embedded data, export, benchmark (~2 min on a quiet 2-core CPU)
demo: $(STAMP)
	$(VENV)/bin/sqakd-edge demo --out runs/demo --force

## test: every check CI runs (lint, types, device-side Python 3.6 check, Dockerfile lint, tests)
test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin -q -t=3.6- --violations jetson/
	HADOLINT=$(VENV)/bin/hadolint scripts/lint-dockerfiles

typecheck: $(STAMP)
	$(VENV)/bin/mypy sqakd_edge

pytest: $(STAMP)
	bash scripts/ensure-sshd
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
