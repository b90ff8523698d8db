"""`embedpipe index --append`: the shards an index does not hold yet are added to it (real FAISS),
index.json stays true, and vectors it cannot extend from are refused with nothing changed.

A grown vector directory is made the way an incremental encode leaves one: the published shard
unchanged (same bytes, same sha256), the new rows in a new shard, a manifest listing both.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embedpipe.cli import main
from embedpipe.errors import EmbedpipeError
from embedpipe.formats.vectors import VectorWriter, open_vectors
from embedpipe.index import IndexConfig, append_index, build_index, open_index

DIM = 16


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write(path, x, first_id=0, rows_per_shard=200, **manifest):
    with VectorWriter(path, dim=x.shape[1], rows_per_shard=rows_per_shard) as writer:
        writer.write([f"doc{i}" for i in range(first_id, first_id + len(x))], x)
        return writer.publish({"encoder": {"pooling": "mean"}, "model": {"content_hash": "abc"},
                               "pooling": "mean", "normalize": True, **manifest})


def grow(path, x_new, first_id):
    """Add a shard to a published vector directory and list it in the manifest (as incremental encode does)."""
    extra = path.parent / "extra.vectors"
    shard = write(extra, x_new, first_id, rows_per_shard=len(x_new))["shards"][0]
    name = f"part-{len(json.loads((path / 'manifest.json').read_text())['shards']):05d}.parquet"
    shutil.move(extra / shard["file"], path / name)
    shutil.rmtree(extra)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["shards"].append({**shard, "file": name})
    manifest["rows"] += shard["rows"]
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def grown(tmp_path):
    """An IVF index over 200 vectors, and the same vector directory grown by 20 (10%) new rows."""
    x_old, x_new = unit(200, 0), unit(20, 1)
    vectors = tmp_path / "c.vectors"
    write(vectors, x_old)
    build_index(vectors, tmp_path / "c.index", IndexConfig(factory="IVF4,Flat", tuning_queries=20))
    grow(vectors, x_new, first_id=200)
    return tmp_path, vectors, x_new


def test_append_adds_only_the_new_shard_and_finds_its_vectors(grown):
    root, vectors, x_new = grown
    before = open_index(root / "c.index").info
    info = append_index(root / "c.index", vectors)
    assert (info["n"] == 220 and info["appends"][-1]["rows"] == 20
            and info["appends"][-1]["shards"] == ["part-00001.parquet"])
    assert info["factory"] == before["factory"] and info["search_params"] == before["search_params"]
    # recall measured again over all 220 vectors, on the queries it was tuned on, and still on target
    assert info["recall_measured_at_n"] == 220 and info["appends"][-1]["recall_at_10"] == info["recall_at_10"]
    assert info["recall_reached"] and info["recall_at_10"] >= info["target_recall"]
    assert info["manifest"] == open_vectors(vectors).manifest
    loaded = open_index(root / "c.index")            # checks index.faiss, ids.parquet, index.json agree
    loaded.index.nprobe = 4                          # all lists: the new vectors must be their own top hit
    _, rows = loaded.search(x_new, k=1)
    assert [loaded.ids_of(r)[0] for r in rows] == [f"doc{i}" for i in range(200, 220)]
    again = append_index(root / "c.index", vectors)  # nothing new: nothing added
    assert again["n"] == 220 and len(again["appends"]) == 1


def test_cli_append_and_build_when_there_is_no_index_yet(grown, tmp_path):
    root, vectors, _ = grown
    result = CliRunner().invoke(main, ["index", str(vectors), "--out", str(root / "c.index"), "--append"])
    assert result.exit_code == 0, result.output
    assert "appended   20 vectors" in result.output and "over 220 vectors" in result.output
    fresh = CliRunner().invoke(main, ["index", str(vectors), "--out", str(tmp_path / "new.index"), "--append"])
    assert fresh.exit_code == 0 and open_index(tmp_path / "new.index").info["n"] == 220
    both = CliRunner().invoke(main, ["index", str(vectors), "--out", str(root / "c.index"), "--append", "--overwrite"])
    assert both.exit_code == 2 and "give one of them" in both.output


@pytest.mark.parametrize("damage, message", [
    ("rebuilt", "the vectors were rebuilt, so rebuild the index without append"),
    ("other_encoder", "was encoded differently from the vectors in the index"),
    ("duplicate_id", "id 'doc5' of a new shard"),
])
def test_vectors_it_cannot_extend_from_are_refused_and_nothing_changes(grown, damage, message):
    root, vectors, x_new = grown
    if damage == "rebuilt":      # a full re-encode: the first shard's bytes differ
        shutil.rmtree(vectors)
        write(vectors, unit(220, 7))
    elif damage == "other_encoder":
        manifest = json.loads((vectors / "manifest.json").read_text())
        manifest["encoder"] = {"pooling": "cls"}
        (vectors / "manifest.json").write_text(json.dumps(manifest))
    else:                        # a new shard repeating an id the index holds
        grow(vectors, unit(1, 9), first_id=5)
    files = {p.name: p.read_bytes() for p in (root / "c.index").iterdir()}
    with pytest.raises(EmbedpipeError) as error:
        append_index(root / "c.index", vectors)
    assert message in str(error.value)
    assert {p.name: p.read_bytes() for p in (root / "c.index").iterdir()} == files
    result = CliRunner().invoke(main, ["index", str(vectors), "--out", str(root / "c.index"), "--append"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output


def test_an_append_that_drops_recall_below_the_target_says_so(tmp_path, caplog):
    """100 near-copies of every tuning query arrive: exact search ranks them by tiny distances that
    4-bit PQ codes cannot tell apart, so the index's top 10 misses most of the true top 10."""
    caplog.set_level("WARNING", logger="embedpipe.index")
    vectors = tmp_path / "c.vectors"
    write(vectors, unit(400, 0))
    built = build_index(vectors, tmp_path / "c.index", IndexConfig(factory="IVF4,PQ4x4", tuning_queries=20,
                                                                   target_recall=0.25))
    assert built["recall_reached"]
    queries = pq.read_table(tmp_path / "c.index" / "tuning.parquet")
    assert queries.num_rows == 20 and queries.column("id").null_count == 0  # held-out corpus vectors, by id
    q = np.asarray(queries.column("vector").combine_chunks().flatten()).reshape(20, DIM)
    steps = np.linspace(1e-3, 1e-4, 100)[None, :, None]         # the last copies are the closest
    near = q[:, None, :] + steps * unit(20 * 100, 2).reshape(20, 100, DIM)
    grow(vectors, (near / np.linalg.norm(near, axis=2, keepdims=True)).reshape(-1, DIM).astype(np.float32), 400)
    info = append_index(tmp_path / "c.index", vectors)
    assert info["n"] == 2400 and info["recall_measured_at_n"] == 2400
    assert info["recall_at_10"] < 0.25 and not info["recall_reached"]
    assert "fell to" in info["warnings"][-1] and "rebuild the index" in info["warnings"][-1]
    assert "below the target 0.25" in caplog.text
