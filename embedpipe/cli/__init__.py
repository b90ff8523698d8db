"""The ``embedpipe`` command line: thin click commands over the library API.

Each command parses options, builds a config (which checks itself), calls the library, and turns
an EmbedpipeError into one ``Error: ...`` line with exit code 1, no traceback; config fields named
in a message are shown as the command's flags.

    options.py    shared options and the error handler
    encode.py     export, encode
    retrieval.py  index, search, evaluate
    classify.py   classify, predict, classify-merge
    pipeline.py   run, submit
"""

from __future__ import annotations

import logging
import os

import click

from .. import __version__
from .classify import classify_cmd, classify_merge_cmd, predict_cmd
from .encode import encode_cmd, export_cmd
from .pipeline import run_cmd, submit_cmd
from .retrieval import evaluate_cmd, index_cmd, search_cmd

# The Hugging Face Hub is used as every Hugging Face tool uses it: a model id (or an hf:// corpus) not
# in the local cache is downloaded, unless HF_HUB_OFFLINE=1 says not to (then one line says so). The
# bundled default model never needs the network.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="embedpipe")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
def main(quiet: bool) -> None:
    """Sentence embeddings for large corpora: encode with ONNX encoders (in this process or in a pool
    of Ray actors), index and search with FAISS, and measure which pooling and head work best on
    your data.

    Models are never downloaded unless you name a hub model and unset HF_HUB_OFFLINE.
    """
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    for noisy in ("ray", "optimum", "transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


for command in (export_cmd, encode_cmd, index_cmd, search_cmd, evaluate_cmd, classify_cmd, predict_cmd,
                classify_merge_cmd, run_cmd, submit_cmd):
    main.add_command(command)
