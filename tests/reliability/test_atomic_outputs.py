"""Atomic outputs: a fault injected between writing a file and renaming it into place leaves no
visible shard and no manifest, an earlier result intact, and a rerun that finishes the work
(reusing what was finished, every id exactly once)."""

import logging
import re

import pytest

from embedpipe import fsio
from embedpipe.encode import encode_corpus
from embedpipe.formats.vectors import open_vectors
from embedpipe.fsio import file_sha256
from tests.reliability.support import assert_same_vectors, by_id, job, manifest, write_rows


class InjectedFault(OSError):
    pass


def fail_rename_when(monkeypatch, predicate):
    """Make ``rename_into_place`` raise for the destination ``predicate`` picks; the file it would
    have renamed was fully written by then."""
    real = fsio.rename_into_place

    def rename(src, dst):
        if predicate(dst):
            raise InjectedFault(f"injected fault before renaming {src.name} to {dst}")
        real(src, dst)

    monkeypatch.setattr(fsio, "rename_into_place", rename)


def test_fault_before_a_shard_rename_leaves_nothing_visible_and_the_rerun_resumes(
        tiny_model_dir, tmp_path, monkeypatch, caplog):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 250), tmp_path / "v"
    fail_rename_when(monkeypatch, lambda dst: dst.name.startswith("part-00002-"))
    with pytest.raises(InjectedFault):
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=50, window=50))
    assert not out.exists() and not list(tmp_path.rglob("manifest.json"))
    staging = tmp_path / ".v.partial"
    names = sorted(p.name for p in staging.iterdir())
    kinds = [re.sub(r"-[0-9a-f]{8}\.", ".", n) for n in names]   # attempt tokens aside
    assert kinds == ["part-00000.json", "part-00000.parquet", "part-00001.json", "part-00001.parquet", "run.json"]
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="embedpipe"):
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=50, window=50))
    assert "2 shard(s) (100 rows) finished by an interrupted run are reused" in caplog.text
    assert manifest(out)["last_run"]["encoded_rows"] == 150 and manifest(out)["rows"] == 250
    assert_same_vectors(by_id(out), by_id(encode_corpus(job(tiny_model_dir, corpus, tmp_path / "ref")).out))
    assert not staging.exists()


def test_fault_before_publishing_keeps_the_earlier_result(tiny_model_dir, tmp_path, monkeypatch):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 60), tmp_path / "v"
    encode_corpus(job(tiny_model_dir, corpus, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fail_rename_when(monkeypatch, lambda dst: dst == out)
    with pytest.raises(InjectedFault):
        encode_corpus(job(tiny_model_dir, corpus, out, overwrite=True, rows_per_shard=7))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert open_vectors(out, verify=True).rows == 60


def test_fault_before_the_manifest_of_a_grown_output(tiny_model_dir, tmp_path, monkeypatch):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 40), tmp_path / "v"
    encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))
    old_manifest = (out / "manifest.json").read_text()
    write_rows(corpus, 0, 100)
    fail_rename_when(monkeypatch, lambda dst: dst == out / "manifest.json")
    with pytest.raises(InjectedFault):
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))
    # New shards may sit in OUT, but the manifest, which alone says what the result is, is the old one.
    assert (out / "manifest.json").read_text() == old_manifest
    assert sorted(by_id(out)) == sorted(f"doc-{i}" for i in range(40))
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))
    m = manifest(out)
    assert m["rows"] == 100 and m["last_run"]["encoded_rows"] == 0 and m["last_run"]["reused_rows"] == 100
    assert sorted(p.name for p in out.glob("part-*")) == [s["file"] for s in m["shards"]]
    for shard in m["shards"]:
        assert file_sha256(out / shard["file"]) == shard["sha256"]
    assert_same_vectors(by_id(out), by_id(encode_corpus(job(tiny_model_dir, corpus, tmp_path / "ref")).out))
