# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench bench-accuracy clean

$(BIN)/hamcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

setup: $(BIN)/hamcli

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests bench

# Speed benchmarks (about 10 minutes); they read ../shared/ham10000-dev. Figures: docs/benchmarks.md.
bench: setup
	$(BIN)/python bench/prepare_bench.py
	$(BIN)/python bench/train_bench.py
	$(BIN)/python bench/predict_bench.py

# Accuracy of four recipes on the dev set (about an hour on 2 cores).
bench-accuracy: setup
	$(BIN)/python bench/accuracy_bench.py

clean:
	rm -rf $(VENV) .demo build dist src/*.egg-info
