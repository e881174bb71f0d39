# Stockroom: `make run` brings the whole system up, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STACK := $(PY) -m inventory_site.stack exec --

.PHONY: run test lint bench browser compose manage stop clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# requirements.txt is production's (the image installs it alone); requirements-local.txt adds what
# `make run` needs (the embedded PostgreSQL and Redis, honcho, the fakes); requirements-dev.txt the tools.
$(VENV)/.local: requirements.txt requirements-local.txt | $(PY)
	$(PIP) install --quiet -r requirements-local.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-local.txt requirements-dev.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(VENV)/.local $@

## run: web, worker and beat with PostgreSQL and Redis (env, local, or embedded)
run: $(VENV)/.local
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(STACK) sh -c 'python manage.py bootstrap && exec honcho start'

## test: install what tests need and run the whole suite, in parallel runners
## (TEST_JOBS=auto: twice the cores, most tests wait on workers and servers; TEST_JOBS=0: one process)
## KIND=unit|e2e|browser runs one kind alone: each app's own tests, the cross-app end-to-end flows
## (tests/e2e/), the browser tests (tests/browser/); docs/architecture.md, "Tests"
TEST_JOBS ?= auto
KIND ?=
TESTS_unit := apps sandbox inventory_site
TESTS_e2e := tests/e2e
TESTS_browser := tests/browser
test: $(VENV)/.dev browser compose
	$(if $(KIND),$(if $(TESTS_$(KIND)),,$(error KIND=$(KIND) is none of unit, e2e, browser)))
	$(STACK) $(PY) -m pytest -n $(TEST_JOBS) --maxschedchunk 1 $(TESTS_$(KIND)) $(PYTEST_ARGS)

## browser: Debian's chromium for the staff-page browser tests
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

## compose: Debian's docker-compose, so a test can check docker-compose.yml (config only, no daemon)
compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
			|| echo "docker-compose could not be installed: the compose check skips" >&2; \
		else echo "docker-compose is missing (sudo apt-get install docker-compose): the compose check skips" >&2; fi; }

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## bench: the benchmarks in bench/, each beside its raw limit
bench: $(VENV)/.dev
	$(STACK) $(PY) bench/run.py $(BENCH_ARGS)

## manage: a management command through the project's venv and stack: make manage ARGS="create_token --channel web"
manage: $(VENV)/.local
	@$(STACK) $(PY) manage.py $(ARGS)

stop:
	$(PY) -m inventory_site.stack stop

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
