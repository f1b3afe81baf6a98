# Each target sets up .venv from pyproject.toml when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/activate

.PHONY: setup quickstart test test-all clean
setup: $(BIN)/activate

quickstart: setup
	$(BIN)/python train.py experiment=quickstart

test: setup
	$(BIN)/python -m pytest -q --numprocesses=auto --maxprocesses=4

clean:
	rm -rf $(VENV) outputs multirun logs
