# Furrow: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint fmt clean-var

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): $(BIN)/python requirements.txt requirements-embedded.txt
	$(BIN)/pip install --quiet -r requirements-embedded.txt
	touch $@

$(STAMP_DEV): $(STAMP_RUN) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## run: the whole app (web, ingest, Celery worker and beat, simulator) on embedded services where no URL is set
run: $(STAMP_RUN)
	$(BIN)/python -m farm.devstack run

## test: lint, type-check and the whole test suite (embedded services where no URL is set)
test: $(STAMP_DEV) lint
	$(BIN)/python -m farm.devstack test -- $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=$${DATABASE_URL:-postgresql://localhost/furrow} REDIS_URL=$${REDIS_URL:-redis://localhost:6379/0} \
	MQTT_URL=$${MQTT_URL:-mqtt://localhost:1883} $(BIN)/mypy .

fmt: $(STAMP_DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
