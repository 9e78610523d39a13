# voxuda: `make test` on a fresh clone installs what it needs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test lint bench demo walkthrough clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check voxuda_cli tests benchmarks examples
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run_all.py

walkthrough: install
	PATH="$(abspath $(BIN)):$$PATH" PYTHON="$(abspath $(BIN))/python" bash examples/walkthrough.sh walkthrough

demo: install
	$(MAKE) -f demo.mk VOXUDA="$(abspath $(BIN))/voxuda"

clean:
	rm -rf $(VENV) demo walkthrough .pytest_cache
