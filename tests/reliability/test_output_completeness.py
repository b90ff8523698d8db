"""Results that would be silently wrong are refused instead: a corpus replaced while it is encoded is
never recorded as complete, and a rerun checks the shards a manifest claims before it calls an
output complete. Each refusal is one `Error:` line (CLI) or an EmbedpipeError (library), exit 1,
nothing published, earlier outputs byte-identical."""

import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot
from tests.reliability.support import by_id, job, manifest, texts, write_rows

ROWS, SHARD_ROWS = 6000, 200


def replace_once_a_shard_is_done(tmp_path, corpus, new_texts):
    """Replace the corpus file (same ids, same row count, other texts) as soon as the run has
    finished its first shard: what a broken upstream job rewriting its output does."""

    def replace():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(tmp_path.glob(".v.partial/part-*.parquet")):
            time.sleep(0.005)
        replacement = tmp_path / "replacement.parquet"
        pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(ROWS)], "text": new_texts}), replacement)
        os.replace(replacement, corpus)

    thread = threading.Thread(target=replace, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("frontend", ["library", "cli"])
def test_a_corpus_replaced_during_the_run_is_not_called_complete(tiny_model_dir, tmp_path, frontend):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, ROWS), tmp_path / "v"
    prepare(EncoderSpec(model=str(tiny_model_dir)))                # the export is cached before the race starts
    new_texts = [t.upper() + " changed" for t in texts(0, ROWS)]
    thread = replace_once_a_shard_is_done(tmp_path, corpus, new_texts)
    if frontend == "library":
        with pytest.raises(EmbedpipeError, match="changed while it was being encoded"):
            encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=SHARD_ROWS))
    else:
        assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--out", out, "--runner", "local",
                                      "--rows-per-shard", SHARD_ROWS), "changed while it was being encoded",
                              "run the command again")
    thread.join()
    assert not out.exists() and not (tmp_path / ".v.partial").exists() and not (tmp_path / ".v.lock").exists()
    # Run again: every vector is from the new texts (none kept from the old file), every id once.
    result = encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=SHARD_ROWS))
    assert result.manifest["last_run"]["reused_rows"] == 0 and result.manifest["rows"] == ROWS
    got = by_id(out)
    assert sorted(got) == sorted(f"doc-{i}" for i in range(ROWS))
    encoder = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir)))
    np.testing.assert_allclose(np.stack([got["doc-0"], got[f"doc-{ROWS - 1}"]]),
                               encoder.encode([new_texts[0], new_texts[-1]]), atol=1e-5)


def damage_removed(shard):
    shard.unlink()


def damage_bytes(shard):
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def damage_rewritten(shard):
    """Rewritten as a valid shard with the same rows and ids, other vectors: only the checksum tells."""
    table = pq.read_table(shard)
    vectors = pa.array([[0.0] * table.column("vector").type.list_size] * table.num_rows,
                       table.column("vector").type)
    pq.write_table(table.set_column(1, "vector", vectors), shard)


def damage_truncated(shard):
    shard.write_bytes(shard.read_bytes()[:100])


@pytest.mark.parametrize("damage", [damage_removed, damage_bytes, damage_rewritten, damage_truncated],
                         ids=["removed", "flipped-byte", "rewritten", "truncated"])
@pytest.mark.parametrize("frontend", ["library", "cli"])
def test_a_rerun_checks_the_shards_the_manifest_claims(tiny_model_dir, tmp_path, damage, frontend):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 60), tmp_path / "v"
    encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))
    shards = [s["file"] for s in manifest(out)["shards"]]
    assert len(shards) == 3
    damage(out / shards[1])
    before = snapshot(tmp_path)
    if frontend == "library":
        with pytest.raises(EmbedpipeError, match=shards[1]) as refused:
            encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))
        message = str(refused.value)
    else:
        message = assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--out", out,
                                                "--runner", "local", "--rows-per-shard", 20), shards[1])
    assert "overwrite" in message and ("missing" in message or "checksum" in message)
    assert snapshot(tmp_path) == before, "the refused rerun changed or left something"
    # --overwrite rebuilds it whole.
    encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20, overwrite=True))
    assert len(by_id(out)) == 60
