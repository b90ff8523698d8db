"""What tests share besides fixtures: small texts, a corpus writer, and the CLI driven in-process with
its one-line-error contract. Import from here (``from tests.helpers import ...``), never from conftest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.testing.models import TINY_MODEL_DIMS, TINY_MODEL_VARIANTS

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


# One tiny sentence-transformers model per architecture (embedpipe.testing.models.TINY_MODEL_VARIANTS).
MODEL_VARIANTS = TINY_MODEL_VARIANTS
MODEL_DIMS = TINY_MODEL_DIMS


def write_corpus(path, texts=TEXTS, ids=None, **extra_columns):
    ids = list(range(len(texts))) if ids is None else ids
    pq.write_table(pa.table({"id": ids, "text": texts, **extra_columns}), path)
    return path



def run_cli(*args):
    """Invoke the embedpipe CLI in-process (arguments may be paths)."""
    from click.testing import CliRunner

    from embedpipe.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def encode_with_each_runner(corpus, model_dir, out_root, **job_fields):
    """``corpus`` encoded by the local runner and by the Ray runner (two actors) into ``out_root``/RUNNER:
    {runner: (ids, vectors)} as the vector directories hold them, for comparing the two."""
    from embedpipe.encode import EncodeJob, encode_corpus
    from embedpipe.encode.encoder import EncoderSpec
    from embedpipe.formats.vectors import open_vectors

    return {runner: open_vectors(encode_corpus(EncodeJob(
                str(corpus), out=str(Path(out_root) / runner), runner=runner, threads=1,
                workers=2 if runner == "ray" else None, spec=EncoderSpec(model=str(model_dir)), **job_fields)).out
            ).read_all() for runner in ("local", "ray")}


def row_cosines(a, b):
    """The cosine of each row of ``a`` with the same row of ``b``: how two encoders' vectors are compared."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 1, exactly one `Error:` line containing every fragment, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def entries(directory: Path) -> set[str]:
    """Names in a directory, hidden ones included: what a user (or a leftover staging dir) leaves there."""
    return {p.name for p in Path(directory).iterdir()}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``, hidden ones included, as relative path -> bytes (None for a directory):
    two equal snapshots mean nothing was created, changed or left behind (staging dirs, .tmp files, locks)."""
    root = Path(root)
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def names_under(root: Path) -> set[str]:
    """Every path under ``root``, hidden ones included, without reading any file (for large trees like
    the export cache, where a new name is what a write would leave)."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*")}
