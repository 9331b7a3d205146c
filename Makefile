# Two commands matter: `make run` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
# The Python asked for, as major.minor: .venv is rebuilt when it was made with another one.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(filter 3.11 3.12 3.13,$(PYTHON_VERSION))$(filter clean,$(MAKECMDGOALS)),)
$(error PYTHON=$(PYTHON) is not a Python 3.11, 3.12 or 3.13 that runs here (its version: '$(PYTHON_VERSION)'); name one on PATH or by full path, e.g. make run PYTHON=python3.12)
endif
VENV := .venv
BIN := $(VENV)/bin
VENV_MARK := $(VENV)/.python-$(PYTHON_VERSION)
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes

FHIR_VENV := .venv-fhir
FHIR_MARK := $(FHIR_VENV)/.python-$(PYTHON_VERSION)
FHIR_STAMP := $(FHIR_VENV)/.installed
FHIR_PORT ?= 8090

CHECKOV_VENV := .venv-checkov
CHECKOV_MARK := $(CHECKOV_VENV)/.python-$(PYTHON_VERSION)
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: soak browser install install-runtime fhir-server-install fhir-server checkov-install run test lint typecheck contracts pytest fuzz bench lock clean

## install-runtime: .venv with the service and its runtime dependencies only (what `make run` needs)
install-runtime: $(RUNTIME_STAMP)

## install: .venv with the service, its runtime and its development dependencies (what `make test` needs)
install: $(STAMP)

# A .venv made with another Python is removed first (its packages were built for that one).
$(VENV_MARK):
	@if test -e $(VENV); then echo "$(VENV) was not made with $(PYTHON) ($(PYTHON_VERSION)): rebuilding it"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	@touch $(VENV_MARK)

$(RUNTIME_STAMP): $(VENV_MARK) pyproject.toml requirements-runtime.lock requirements-build.lock
	$(PIP) -r requirements-build.lock
	$(PIP) -r requirements-runtime.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP) requirements.lock
	$(PIP) -r requirements.lock
	@touch $(STAMP)

## fhir-server-install: the local FHIR R4 server (sekmet-fhir) in its own venv, .venv-fhir
fhir-server-install: $(FHIR_STAMP)

$(FHIR_MARK):
	@if test -e $(FHIR_VENV); then echo "$(FHIR_VENV) was not made with $(PYTHON) ($(PYTHON_VERSION)): rebuilding it"; rm -rf $(FHIR_VENV); fi
	$(PYTHON) -m venv $(FHIR_VENV)
	@touch $(FHIR_MARK)

$(FHIR_STAMP): $(FHIR_MARK) fhir-server/requirements.lock
	$(FHIR_VENV)/bin/python -m pip install --disable-pip-version-check -q --require-hashes -r fhir-server/requirements.lock
	@touch $(FHIR_STAMP)

## fhir-server: run the local FHIR server on http://127.0.0.1:$(FHIR_PORT)/fhir (data under ./var/)
fhir-server: fhir-server-install
	@mkdir -p var/fhir-server
	SEKMET_PORT=$(FHIR_PORT) SEKMET_BASE_URL=http://127.0.0.1:$(FHIR_PORT)/fhir \
	SEKMET_DB=var/fhir-server/sekmet.db \
	  $(FHIR_VENV)/bin/sekmet serve --config fhir-server/sekmet.yaml --host 127.0.0.1 --port $(FHIR_PORT)

## checkov-install: checkov, which scans deploy/kubernetes/ in make test, in its own venv,
## .venv-checkov (its many pins would otherwise constrain the project's)
checkov-install: $(CHECKOV_STAMP)

$(CHECKOV_MARK):
	@if test -e $(CHECKOV_VENV); then echo "$(CHECKOV_VENV) was not made with $(PYTHON) ($(PYTHON_VERSION)): rebuilding it"; rm -rf $(CHECKOV_VENV); fi
	$(PYTHON) -m venv $(CHECKOV_VENV)
	@touch $(CHECKOV_MARK)

$(CHECKOV_STAMP): $(CHECKOV_MARK) deploy/checkov/requirements.lock
	$(CHECKOV_VENV)/bin/python -m pip install --disable-pip-version-check -q --require-hashes -r deploy/checkov/requirements.lock
	@touch $(CHECKOV_STAMP)

## run: start the service on http://127.0.0.1:$${CDS_PORT:-8080} (embedded SQLite under ./var/),
## JWT verification off unless CDS_REQUIRE_JWT=true (loopback only; the service warns loudly)
run: install-runtime
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

pytest: install fhir-server-install checkov-install browser
	CDS_TEST_REQUIRE_FHIR_SERVER=1 CDS_TEST_REQUIRE_BROWSER=1 CDS_TEST_REQUIRE_CHECKOV=1 $(BIN)/pytest

## browser: Debian's chromium for the SMART app's browser tests (installed with apt as root)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium is missing and apt-get cannot run here: install Debian's chromium (the browser tests need it)"; exit 1; fi; }

## fuzz: the fuzzing tests at full length (10,000 byte-mutated requests; make test runs 400)
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(BIN)/pytest -q tests/contract/test_fuzz.py

## soak: 3 instances on one PostgreSQL behind a round-robin front, 10 minutes of mixed traffic, one
## instance restarted midway; prints the figures, keeps them and each instance's /metrics in var/soak/
SOAK_SECONDS ?= 600
soak: install fhir-server-install
	rm -rf var/soak
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_REPORT_DIR=var/soak CDS_TEST_REQUIRE_FHIR_SERVER=1 \
	  $(BIN)/pytest -q -s -p no:cacheprovider tests/integration/test_many_instances.py
	@echo "figures and /metrics pages: var/soak/"

## bench: the service against a bare FastAPI app, same run, interleaved
bench: install
	$(BIN)/python -m bench.run

## vendor-js: refresh the SMART app's vendored fhirclient from the npm registry (needs npm; npm
## checks the tarball against the registry's integrity); then update VENDOR.toml as printed
FHIRCLIENT_VERSION ?= 2.6.3
VENDOR_JS := cds_service/smart_app/static/vendor
vendor-js:
	rm -rf var/vendor-js && mkdir -p var/vendor-js
	cd var/vendor-js && npm pack --silent fhirclient@$(FHIRCLIENT_VERSION) >/dev/null && tar xzf fhirclient-$(FHIRCLIENT_VERSION).tgz
	cp var/vendor-js/package/build/fhir-client.min.js var/vendor-js/package/build/fhir-client.min.js.LICENSE.txt $(VENDOR_JS)/
	cp var/vendor-js/package/LICENSE $(VENDOR_JS)/fhirclient.LICENSE
	@echo "update $(VENDOR_JS)/VENDOR.toml: version $(FHIRCLIENT_VERSION), integrity $$(cd var/vendor-js && npm view fhirclient@$(FHIRCLIENT_VERSION) dist.integrity), sha256 $$(sha256sum $(VENDOR_JS)/fhir-client.min.js | cut -d' ' -f1)"

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
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o deploy/checkov/requirements.lock deploy/checkov/requirements.in

clean:
	rm -rf $(VENV) $(FHIR_VENV) $(CHECKOV_VENV) .venv-lock .mypy_cache .ruff_cache .pytest_cache
