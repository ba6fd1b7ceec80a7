# Traffic Dam: `make up` runs the dam locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test chaos flood flood-all load-tools lint typecheck clean

CHAOS_DURATION_S ?= 120
CHAOS_RATE ?= 30

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

# The chaos scenarios for minutes each; prints a reconciliation table per scenario.
chaos: $(STAMP)
	DAM_CHAOS_DURATION_S=$(CHAOS_DURATION_S) DAM_CHAOS_RATE=$(CHAOS_RATE) \
		$(BIN)/pytest tests/chaos -s -q -o timeout=3600

# Debian's hey offers single-key floods at a fraction of a Python client's CPU; installed
# when missing (as root with apt-get), else the runner falls back to its Python generators.
load-tools:
	@command -v hey >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null; } \
		|| echo "hey is not installed: floods use the Python generators"

# The headline scenario, shortened to fit a few minutes; out/<scenario>-<time>/report.md
FLOOD_SCENARIO ?= single-abuser
FLOOD_DURATION_S ?= 30
flood: $(STAMP) load-tools
	$(BIN)/dam flood $(FLOOD_SCENARIO) --duration-s $(FLOOD_DURATION_S)

# Every scenario at its full length (about 20 minutes)
flood-all: $(STAMP) load-tools
	for s in single-abuser distributed-flood burst steady; do $(BIN)/dam flood $$s || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy libs/common/dam_common services

clean:
	rm -rf $(VENV) .dam out .pytest_cache .ruff_cache .mypy_cache
