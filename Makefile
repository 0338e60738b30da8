# Tanglaw — two commands: `make run` starts the console, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: run test test-quick lint browser-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,engine]'
	touch $@

## make run: install, migrate, create the admin on first run, serve on HOST:PORT
run: $(STAMP)
	$(PY) manage.py serve

## make test: every test (engine and browser included), plus lint and checks
test: $(STAMP) browser-deps lint
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

## make test-quick: the fast suite, without the real engine and the browser
test-quick: $(STAMP) lint
	$(PY) -m pytest -m "not engine and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## Debian's Chromium for the browser tests (never a browser download)
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
