# Dockyard — two commands: `make up` (install and start) and `make test` (install and test).
SHELL := /bin/sh
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= $(CURDIR)/.dockyard
PYTEST_ARGS ?=

.PHONY: install install-test engine up test lint unit bench clean

install:
	./scripts/install.sh

install-test:
	WANT_TEST=1 ./scripts/install.sh

engine:
	./scripts/ensure-dockerd.sh

up: install engine
	@echo "Dockyard on http://$(LISTEN) — data in $(DATA_DIR); CLI: .venv/bin/dockyard"
	DOCKYARD_DATA_DIR=$(DATA_DIR) .venv/bin/dockyard server --listen $(LISTEN)

lint: install-test
	.venv/bin/ruff check dockyard tests bench
	.venv/bin/lint-imports

test: install-test engine lint
	./scripts/test.sh $(PYTEST_ARGS)

unit: install-test
	.venv/bin/python -m pytest -q tests/unit

bench: install-test engine
	.venv/bin/python -m bench

clean:
	rm -rf .venv .dockyard .pytest_cache
