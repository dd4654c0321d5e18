# Thin wrapper: the work is done by `delab` (src/delab) and pytest. `make lab` and `make test` are all a learner
# needs; the other targets are steps of those two.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
STATE := .delab
TOOLS := $(STATE)/tools
UV := $(TOOLS)/bin/uv
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' requirements/main.lock)
ENVS := .venv/.synced .venv-flink/.synced .venv-airflow/.synced .venv-mlops/.synced .venv-checkov/.synced
JOBS ?= 2
PYTEST_ARGS ?=
export UV_PYTHON_DOWNLOADS := never
# An offline workshop bundle (scripts/bundle): `make bundle BUNDLE=DIR` writes one, `make setup|lab BUNDLE=DIR` (or
# DELAB_BUNDLE=DIR in the environment) installs from one with no network.
BUNDLE ?= $(DELAB_BUNDLE)
export DELAB_BUNDLE := $(if $(BUNDLE),$(abspath $(BUNDLE)))

.PHONY: help setup bundle bundle-check lab test test-loaded lint unit notebooks notebook-tests lock up down bench clean

help:
	@echo "make lab    set up everything, start the services, open JupyterLab on labs/"
	@echo "make test   everything CI checks (lint, unit tests, every solution and lab notebook)"
	@echo "make bundle BUNDLE=DIR   an offline bundle for a workshop; make lab BUNDLE=DIR installs from it"
	@echo "other: setup notebooks test-loaded lock up down bench clean"

$(UV): requirements/main.lock
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found: install python3.11 (apt, brew or conda)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q $(if $(DELAB_BUNDLE),--no-index --find-links $(DELAB_BUNDLE)/python/wheels) "uv==$(UV_VERSION)"
	@touch $@

# One environment per kernel, installed from its lock (never re-resolved), with the project's package.
.venv/.synced: requirements/main.lock pyproject.toml | $(UV)
	scripts/make-env .venv requirements/main.lock delab "Python 3 (delab)"
.venv-flink/.synced: requirements/flink.lock pyproject.toml .venv/.synced | $(UV)
	scripts/make-env .venv-flink requirements/flink.lock delab-flink "Python 3 (delab-flink · PyFlink)"
.venv-airflow/.synced: requirements/airflow.lock pyproject.toml .venv/.synced | $(UV)
	scripts/make-env .venv-airflow requirements/airflow.lock delab-airflow "Python 3 (delab-airflow · Airflow)"
.venv-mlops/.synced: requirements/mlops.lock pyproject.toml .venv/.synced | $(UV)
	scripts/make-env .venv-mlops requirements/mlops.lock delab-mlops "Python 3 (delab-mlops · MLflow, KServe)"
# a command-line tool, not a kernel: the labs run .venv-checkov/bin/checkov
.venv-checkov/.synced: requirements/checkov.lock | $(UV)
	scripts/make-env .venv-checkov requirements/checkov.lock - -

setup: bundle-check $(ENVS)
	@if [ -x infra/native/install.sh ] && [ "$${DELAB_STACK:-native}" = native ]; then infra/native/install.sh; fi

bundle-check:
	@if [ -n "$(DELAB_BUNDLE)" ]; then scripts/bundle check "$(DELAB_BUNDLE)"; fi

# everything setup downloads, into one folder (default .delab/bundle); scripts/prove-offline-bundle proves it
bundle:
	$(MAKE) setup BUNDLE= DELAB_BUNDLE=
	scripts/bundle make "$(or $(BUNDLE),$(STATE)/bundle)"

notebooks: .venv/.synced
	.venv/bin/delab notebooks

lab: setup
	@if .venv/bin/delab stack --help >/dev/null 2>&1; then .venv/bin/delab stack up; fi
	.venv/bin/python -m delab.jupyterlab

lint: .venv/.synced
	.venv/bin/ruff check src tests solutions scripts conftest.py
	.venv/bin/ruff format --check src tests solutions scripts conftest.py
	.venv/bin/delab notebooks --check

# Unit tests, the in-sync and curriculum checks, the kernels and JupyterLab — with, alongside, the tests that need
# the Airflow and Flink environments; then every solution notebook (must pass); then every lab notebook (must stop
# at its first "Not solved yet"). Phases run one after another because a lab's tests, solution and student
# notebook share the lab's namespace in the services; within a phase, files run in parallel (one file per worker).
NBVAL := --nbval-lax --nbval-cell-timeout 300
test: export DELAB_TEST_STATE_DIR = $(CURDIR)/$(STATE)/test-state
test: setup lint
	rm -rf $(STATE)/test-state && mkdir -p $(STATE)/test-state
	@echo "tests/airflow, tests/flink and tests/mlops run alongside, in their own environments (logs: $(STATE)/test-state/*.log)"
	@.venv-airflow/bin/pytest -q tests/airflow $(PYTEST_ARGS) > $(STATE)/test-state/airflow.log 2>&1 & airflow=$$!; \
	.venv-flink/bin/pytest -q tests/flink $(PYTEST_ARGS) > $(STATE)/test-state/flink.log 2>&1 & flink=$$!; \
	.venv-mlops/bin/pytest -q tests/mlops $(PYTEST_ARGS) > $(STATE)/test-state/mlops.log 2>&1 & mlops=$$!; \
	.venv/bin/pytest -n $(JOBS) --dist loadfile tests $(PYTEST_ARGS); main=$$?; \
	wait $$airflow; a=$$?; wait $$flink; f=$$?; wait $$mlops; m=$$?; \
	for env in airflow:$$a flink:$$f mlops:$$m; do rc=$${env#*:}; env=$${env%%:*}; echo "--- tests/$$env (exit $$rc)"; \
		if [ $$rc -eq 0 ]; then tail -n 1 $(STATE)/test-state/$$env.log; else cat $(STATE)/test-state/$$env.log; fi; done; \
	[ $$main -eq 0 ] && [ $$a -eq 0 ] && [ $$f -eq 0 ] && [ $$m -eq 0 ]
	.venv/bin/pytest -n $(JOBS) --dist loadfile $(NBVAL) solutions $(PYTEST_ARGS)
	.venv/bin/pytest -n $(JOBS) --dist loadfile $(NBVAL) labs $(PYTEST_ARGS)

# The same `make test`, with the machine kept busy beside it (BUSY: busy loops and file churners at normal
# priority, stopped when the run ends): every check must give the same verdict as on an idle machine.
BUSY ?= --cpu 2 --io 1
test-loaded: .venv/.synced
	.venv/bin/python scripts/busy_machine.py $(BUSY) -- $(MAKE) test

lock: | $(UV)
	for env in main flink airflow mlops checkov; do \
		$(UV) pip compile requirements/$$env.in -o requirements/$$env.lock --python-version 3.11 \
			--generate-hashes --no-header -q --upgrade-package delab || exit 1; done
	.venv/bin/python -m delab.envfiles

up: setup
	.venv/bin/delab stack up
down:
	@if [ -x .venv/bin/delab ]; then .venv/bin/delab stack down; fi
bench: setup
	.venv/bin/python scripts/bench_stack.py
	.venv/bin/delab stack up
	.venv/bin/python scripts/bench_notebooks.py --runs 2

clean: down
	rm -rf .venv .venv-flink .venv-airflow .venv-mlops .venv-checkov $(STATE)
