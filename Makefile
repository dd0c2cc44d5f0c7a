# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv first.
# `make setup TORCH=cpu` installs PyTorch's CPU-only build first (about 700 MB instead of about 5 GB),
# from PyTorch's own index: for machines without an NVIDIA GPU that can reach download.pytorch.org.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH ?=
CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: setup demo test test-fast lint bench bench-accuracy clean

$(BIN)/hamcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	if [ "$(TORCH)" = cpu ]; then $(BIN)/python -m pip install torch torchvision --index-url $(CPU_INDEX); fi
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

setup: $(BIN)/hamcli

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest

# Every command once, end to end, on a tiny synthetic dataset (about a minute on 2 cores): for quick checks.
test-fast: setup
	$(BIN)/python -m pytest -m fast

lint: setup
	$(BIN)/ruff check src tests bench

# Speed benchmarks (about 20 minutes); they read ../shared/ham10000-dev. Figures: docs/benchmarks.md.
bench: setup
	$(BIN)/python bench/prepare_bench.py
	$(BIN)/python bench/train_bench.py
	$(BIN)/python bench/predict_bench.py
	$(BIN)/python bench/serve_bench.py
	$(BIN)/python bench/export_bench.py
	$(BIN)/python bench/ddp_bench.py

# Accuracy of the recommended recipe on the dev set (about 30 minutes on 2 cores); --list shows the others.
bench-accuracy: setup
	$(BIN)/python bench/accuracy_bench.py --recipes lite0-square-8

clean:
	rm -rf $(VENV) .demo build dist src/*.egg-info
