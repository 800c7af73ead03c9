# The only entry points, for developers and Jenkins alike. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
CONTAINER ?= docker
IMAGE_REPOSITORY ?= chomik
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo latest)
IMAGE ?= $(IMAGE_REPOSITORY):$(IMAGE_TAG)
DEPLOY_PARAMS ?= deploy.env

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	@bash scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## create .venv, install the distribution with dev tools, PostgreSQL if missing
	@if [ -d .git ] && [ -x $(BIN)/pre-commit ]; then $(BIN)/pre-commit install >/dev/null || true; fi

fmt: install ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: install ## ruff, mypy, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chomik clients txcoord apps mocks
	$(BIN)/lint-imports

test: lint ## lint, then every test except the `system` and `chaos` ones, with branch coverage
	$(BIN)/pytest -m "not system and not chaos" -n 2 --dist loadfile --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

test-system: install ## the `system` tests: real processes, crash windows, replicas
	$(BIN)/pytest -m system -n 2 --dist loadfile $(PYTEST_ARGS)

test-chaos: install ## the `chaos` suite: faults under traffic on one running system, then `chomik check`
	$(BIN)/pytest -m chaos -v $(PYTEST_ARGS)

test-fuzz: install ## only the schema fuzzing of the public API (FUZZ_EXAMPLES=50 searches harder)
	$(BIN)/pytest -m fuzz -v $(PYTEST_ARGS)

run: install ## start the whole system (embedded PostgreSQL and Kafka unless configured)
	$(BIN)/chomik run

migrate: install ## migrate every database to head
	$(BIN)/chomik db upgrade all

up: ## docker compose up (needs a Docker engine)
	docker compose up --build -d

down: ## docker compose down
	docker compose down

image: ## build the one image of every process (CONTAINER=podman works too)
	$(CONTAINER) build -f docker/Dockerfile -t $(IMAGE) .

push: ## push the image to its registry
	$(CONTAINER) push $(IMAGE)

deploy: ## render the OpenShift template (DEPLOY_PARAMS, IMAGE) and apply it
	set -o pipefail; oc process -f openshift-templates/chomik.yaml \
		--param-file=$(DEPLOY_PARAMS) -p IMAGE=$(IMAGE) | oc apply -f -

benchmark: install ## run every benchmark script and print its figures
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

.PHONY: help install fmt lint test test-system test-chaos test-fuzz run migrate up down image push deploy benchmark
