# Two commands for a newcomer:
#   make serve   start the service on the embedded SQLite default (./ledger-data/)
#   make test    run the whole test suite (SQLite and PostgreSQL contract tests)
# Both create .venv from pyproject.toml on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: serve test lint bench clean

$(BIN)/ledger: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/ledger

serve: $(BIN)/ledger
	$(BIN)/ledger serve

test: $(BIN)/ledger
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/ledger
	$(BIN)/ruff check ledger api tests bench
	$(BIN)/mypy

bench: $(BIN)/ledger
	$(BIN)/python bench/run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
