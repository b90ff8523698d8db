# Two commands: `make demo` (set up, then run pipelines/demo.yaml over the bundled sample corpus with
# the bundled all-MiniLM-L6-v2: encode -> index -> evaluate -> classify, then one search; a second
# `make demo` skips the stages already complete, `make clean` starts over) and `make test` (set up,
# then the whole test suite, with the docstring examples); `make lint` runs ruff. Nothing is downloaded
# from a model hub; pip takes packages from the registry.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := embedpipe/data/sample_corpus.parquet
DEMO := demo_out
export HF_HUB_OFFLINE := 1
export EMBEDPIPE_CACHE ?= $(CURDIR)/.cache/embedpipe

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel first; a looser pin would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/embedpipe run pipelines/demo.yaml --output-dir $(DEMO)
	$(BIN)/embedpipe search $(DEMO)/sample.index "a large wild cat of the jungle" -k 5 --corpus $(SAMPLE)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO) .cache .pytest_cache
