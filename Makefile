# jaxvid: every target sets up its own virtual environment first (reproducibly, from constraints.txt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-slow bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 (CPU) in constraints.txt; any other torch pulls GBs of CUDA wheels
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

## The main job on the built-in default model: txt2img through the whole stack.
demo: setup
	$(BIN)/jaxvid generate --prompt "a red circle moving on a blue background" -o outputs/demo.png

## The default test suite (what CI runs): under 15 minutes on 2 CPU cores.
test: setup
	$(BIN)/python -m pytest -q -n 2 --durations=10

## Tests marked slow (full-size SD1.5 round trips and the like).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow --durations=10

## CPU benchmarks against PyTorch (tiny configs; results in experiments/results, see docs/benchmarks.md).
bench: setup
	$(BIN)/python experiments/bench_unet.py --preset tiny --batches 1 2 4 8 --iters 10
	$(BIN)/python experiments/bench_fastvideoedit.py --preset tiny --frames 32 --steps 15 --iters 2
	$(BIN)/python experiments/bench_stream.py --preset tiny --size 128 --frames 24

clean:
	rm -rf $(VENV) outputs .pytest_cache
