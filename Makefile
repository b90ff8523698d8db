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

# torch's CPU build first, from torch-cpu.txt (its one pinned version, and PyTorch's CPU index);
# a plain `pip install torch` would pull a multi-GB CUDA build. Two retries: where that index cannot
# be reached, pip falls back to the indexes and find-links it is configured with, without a long wait.
$(VENV)/.installed: pyproject.toml torch-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --retries 2 -r torch-cpu.txt
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
