# Traffic Dam: `make up` runs the dam locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/dam up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy libs/common/dam_common services
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy libs/common/dam_common services

clean:
	rm -rf $(VENV) .dam out .pytest_cache .ruff_cache .mypy_cache
