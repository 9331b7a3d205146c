# Two commands matter: `make run` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FHIR_VENV := .venv-fhir
FHIR_STAMP := $(FHIR_VENV)/.installed
FHIR_PORT ?= 8090

.PHONY: install fhir-server-install fhir-server run test lint typecheck contracts pytest fuzz bench lock clean

## install: create .venv with the project and its locked dependencies (no network when up to date)
install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-build.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes -r requirements-build.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## fhir-server-install: the local FHIR R4 server (sekmet-fhir) in its own venv, .venv-fhir
fhir-server-install: $(FHIR_STAMP)

$(FHIR_STAMP): fhir-server/requirements.lock
	@test -x $(FHIR_VENV)/bin/python || $(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/python -m pip install --disable-pip-version-check -q --require-hashes -r fhir-server/requirements.lock
	@touch $(FHIR_STAMP)

## fhir-server: run the local FHIR server on http://127.0.0.1:$(FHIR_PORT)/fhir (data under ./var/)
fhir-server: fhir-server-install
	@mkdir -p var/fhir-server
	SEKMET_PORT=$(FHIR_PORT) SEKMET_BASE_URL=http://127.0.0.1:$(FHIR_PORT)/fhir \
	SEKMET_DB=var/fhir-server/sekmet.db \
	  $(FHIR_VENV)/bin/sekmet serve --config fhir-server/sekmet.yaml --host 127.0.0.1 --port $(FHIR_PORT)

## run: start the service on http://127.0.0.1:$${CDS_PORT:-8080} (embedded SQLite under ./var/),
## JWT verification off unless CDS_REQUIRE_JWT=true (loopback only; the service warns loudly)
run: install
	@mkdir -p var
	CDS_REQUIRE_JWT=$${CDS_REQUIRE_JWT:-false} $(BIN)/cds-service serve

## test: every quality gate and every test
test: install lint typecheck contracts pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/lint-imports

pytest: install fhir-server-install
	CDS_TEST_REQUIRE_FHIR_SERVER=1 $(BIN)/pytest

## fuzz: the fuzzing tests at full length (10,000 byte-mutated requests; make test runs 400)
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(BIN)/pytest -q tests/contract/test_fuzz.py

## bench: the service against a bare FastAPI app, same run, interleaved
bench: install
	$(BIN)/python -m bench.run

## lock: re-resolve the pinned dependency set (needs network)
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q pip-tools
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --extra dev --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o requirements-runtime.lock pyproject.toml
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o requirements-build.lock requirements-build.in
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o fhir-server/requirements.lock fhir-server/requirements.in

clean:
	rm -rf $(VENV) $(FHIR_VENV) .venv-lock .mypy_cache .ruff_cache .pytest_cache
