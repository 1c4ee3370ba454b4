# Lightbox developer commands. Both bootstrap their own virtualenv (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# the runtime dependencies only (make run), and the development toolchain as well (make test)
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# pytest-xdist workers: 4 processes, also on CI's 2 cores, as many tests wait on servers, sockets
# and child processes rather than compute (one process: 32 min on CI; 4: under 16 min on 2 cores
# shared with other jobs). Tests are handed out 4 at a time so that the slowest files, which run
# first (tests/conftest.py), are spread over the workers. Override: make test PYTEST_WORKERS=-n0
PYTEST_WORKERS ?= -n 4 --maxschedchunk 4

.PHONY: run test lint typecheck openapi bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(RUN_STAMP) $(DEV_STAMP)

## Start Lightbox on its embedded default: SQLite + files in ./lightbox-data, http://127.0.0.1:8080/dicom-web
run: $(RUN_STAMP)
	$(BIN)/lightbox serve

## Run the whole test suite (lint, types, layer contracts, pytest on PostgreSQL + SQLite)
test: $(DEV_STAMP)
	$(BIN)/ruff check app tests bench alembic
	$(BIN)/ruff format --check app tests bench alembic
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_WORKERS) --doctest-modules app/dicom app/index app/storage app/api app/services app/auth app/cli app/dimse tests

lint: $(DEV_STAMP)
	$(BIN)/ruff check --fix app tests bench alembic
	$(BIN)/ruff format app tests bench alembic

openapi: $(RUN_STAMP)
	$(BIN)/lightbox openapi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
