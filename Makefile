# jaxvid: every target sets up its own virtual environment first (reproducibly, from constraints.txt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-slow lint bench toyworld clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 (CPU) in constraints.txt; any other torch pulls GBs of CUDA wheels
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

## The main job on the built-in default model: edit a generated toy clip, measured against ground truth.
demo: setup
	$(BIN)/jaxvid demo -o outputs/demo

## What CI runs: the linter, then the default test suite (see README for measured times).
## --dist loadfile: a file's tests share one worker, so its module fixtures (compiled models,
## a trained micro model) are built once, not once per worker.
test: setup lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

## Tests marked slow (full-size SD1.5 round trips, long training runs and the like).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow --durations=15

lint: setup
	$(BIN)/ruff check .

## CPU benchmarks against PyTorch (tiny configs). Results go to outputs/bench; add
## BENCH_ARGS=--update-results to rewrite the committed experiments/results (see docs/benchmarks.md).
bench: setup
	PYTHON=$(BIN)/python experiments/cpu_suite.sh $(BENCH_ARGS)

## Train the built-in toy-world model from scratch and assemble jaxvid/assets/toyworld (docs/toyworld.md).
toyworld: setup
	$(BIN)/python tools/build_toyworld.py --runs runs/toyworld

clean:
	rm -rf $(VENV) outputs .pytest_cache
