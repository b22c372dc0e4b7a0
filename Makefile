# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/seq2seq demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check seq2seq tests benchmarks recipes
	$(BIN)/ruff format --check seq2seq tests benchmarks recipes
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
