# Each target sets up .venv when it is missing: the versions in constraints.txt (the ones CI passed
# with), the package itself from pyproject.toml. `make lock` refreshes constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt

$(BIN)/activate: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint $(LOCK) --upgrade pip
	$(BIN)/pip install --quiet --constraint $(LOCK) -e ".[dev]"
	touch $(BIN)/activate

.PHONY: setup quickstart test test-fast lint lock clean
setup: $(BIN)/activate

quickstart: setup
	$(BIN)/python train.py experiment=quickstart

test: setup
	$(BIN)/python -m pytest -q --numprocesses=auto --maxprocesses=4

test-fast: setup
	$(BIN)/python -m pytest -q --numprocesses=auto --maxprocesses=4 -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What the registry serves today for pyproject.toml's ranges, installed into a scratch venv and written
# down with exact versions; then run `make test` on it and commit constraints.txt with the change.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e ".[dev]"
	{ echo "# The versions CI passed with: make installs them, make lock refreshes them (see README)."; \
	  echo "# Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'), Linux x86_64."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) outputs multirun logs
