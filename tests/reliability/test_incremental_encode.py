"""Incremental encode: a grown corpus encodes only its new ids into new shards; a complete output
is a no-op; another config is refused unless --overwrite; removed ids and changed texts are kept
as documented (--overwrite rebuilds)."""

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.encode import encode_corpus
from embedpipe.formats.vectors import shard_number
from tests.helpers import assert_one_line_error as one_line_error
from tests.helpers import run_cli as cli
from tests.reliability.support import assert_same_vectors, by_id, job, manifest, write_rows


def snapshot(out):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("part-*.parquet")}


def test_a_grown_corpus_encodes_only_new_ids_into_new_shards(tiny_model_dir, tmp_path, caplog):
    corpus, out = tmp_path / "corpus", tmp_path / "v"
    corpus.mkdir()
    write_rows(corpus / "a.parquet", 0, 300)
    encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=100))
    before = snapshot(out)
    write_rows(corpus / "b.parquet", 300, 330)            # the nightly delivery: 10% new rows
    with caplog.at_level(logging.INFO, logger="embedpipe"):
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=100))
    m = manifest(out)
    assert m["last_run"]["encoded_rows"] == 30 and m["last_run"]["reused_rows"] == 300
    assert m["last_run"]["reused_shards"] == 3 and m["rows"] == 330
    assert [shard_number(s["file"]) for s in m["shards"]] == [0, 1, 2, 3]
    assert [s["source"]["file"].rsplit("/", 1)[1] for s in m["shards"]] == ["a.parquet"] * 3 + ["b.parquet"]
    assert snapshot(out).items() >= before.items()          # published shards are never rewritten
    assert "encoding only ids it lacks" in caplog.text and "30 rows encoded, 300 reused" in caplog.text
    full = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "full")).out
    assert_same_vectors(by_id(out), by_id(full))
    assert not list(tmp_path.glob(".v.*"))                  # no staging or lock left behind


def test_rerun_over_a_complete_output_is_a_no_op_that_says_so(tiny_model_dir, tmp_path, caplog):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 40), tmp_path / "v"
    args = ["encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", out]
    assert cli(*args).exit_code == 0
    before = snapshot(out), (out / "manifest.json").read_text()
    with caplog.at_level(logging.INFO, logger="embedpipe"):
        result = cli(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["up_to_date"] is True and summary["encoded_rows"] == 0 and summary["rows"] == 40
    assert "already complete for this corpus and config: nothing to do" in caplog.text
    assert (snapshot(out), (out / "manifest.json").read_text()) == before


def test_another_config_is_refused_unless_overwrite(tiny_model_dir, tmp_path):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 40), tmp_path / "v"
    base = ["encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", out]
    assert cli(*base).exit_code == 0
    before = (out / "manifest.json").read_text()
    one_line_error(cli(*base, "--pooling", "cls"), "encoded with another config", "pooling mean -> cls", "--overwrite")
    one_line_error(cli(*base, "--dtype", "float16"), "dtype float32 -> float16")
    assert (out / "manifest.json").read_text() == before
    result = cli(*base, "--pooling", "cls", "--overwrite")
    assert result.exit_code == 0, result.output
    assert manifest(out)["pooling"] == "cls" and manifest(out)["last_run"]["encoded_rows"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet", "v"]


def test_removed_ids_keep_their_vectors_and_changed_texts_keep_theirs(tiny_model_dir, tmp_path, caplog):
    """The documented limits of an incremental run: it adds ids, it does not notice edits."""
    path, out = tmp_path / "c.parquet", tmp_path / "v"
    write_rows(path, 0, 50)
    first = by_id(encode_corpus(job(tiny_model_dir, path, out)).out)
    table = pq.read_table(path).slice(10)                                   # ids 0-9 removed
    table = table.set_column(1, "text", pa.array(["a changed text"] + table.column("text").to_pylist()[1:]))
    table = pa.concat_tables([table, pq.read_table(write_rows(tmp_path / "new.parquet", 50, 55))])
    pq.write_table(table, path)
    with caplog.at_level(logging.INFO, logger="embedpipe"):
        encode_corpus(job(tiny_model_dir, path, out))
    m = manifest(out)
    assert m["last_run"]["encoded_rows"] == 5 and m["last_run"]["removed_ids"] == 10 and m["rows"] == 55
    assert "10 id(s)" in caplog.text and "overwrite rebuilds" in caplog.text
    after = by_id(out)
    assert (after["doc-10"] == first["doc-10"]).all() and "doc-0" in after
    rebuilt = by_id(encode_corpus(job(tiny_model_dir, path, out, overwrite=True)).out)
    assert "doc-0" not in rebuilt and not (rebuilt["doc-10"] == first["doc-10"]).all()


def test_a_corpus_whose_id_type_changed_is_refused(tiny_model_dir, tmp_path):
    path, out = write_rows(tmp_path / "c.parquet", 0, 20), tmp_path / "v"
    encode_corpus(job(tiny_model_dir, path, out))
    pq.write_table(pa.table({"id": list(range(25)), "text": ["a cat"] * 25}), path)
    result = cli("encode", path, "--model", tiny_model_dir, "--runner", "local", "--out", out)
    one_line_error(result, "ids in", "are int64", "are string", "--overwrite")
    assert manifest(out)["rows"] == 20


def test_a_published_shard_that_changed_is_refused_before_extending(tiny_model_dir, tmp_path):
    path, out = write_rows(tmp_path / "c.parquet", 0, 30), tmp_path / "v"
    encode_corpus(job(tiny_model_dir, path, out, rows_per_shard=10))
    shard = out / manifest(out)["shards"][1]["file"]
    pq.write_table(pq.read_table(shard).slice(0, 9), shard)                 # a shard edited behind our back
    write_rows(tmp_path / "c.parquet", 0, 40)
    result = cli("encode", path, "--model", tiny_model_dir, "--runner", "local", "--out", out)
    one_line_error(result, f"{shard.name} does not match its checksum", "--overwrite")
    assert manifest(out)["rows"] == 30 and not list(tmp_path.glob(".v.partial"))


def test_two_runs_never_write_one_output_at_once(tiny_model_dir, tmp_path):
    from embedpipe.encode.resume import output_lock

    corpus, out = write_rows(tmp_path / "c.parquet", 0, 20), tmp_path / "v"
    with output_lock(out):                                      # another run holds the output
        result = cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", out)
        one_line_error(result, f"another embedpipe run is writing {out}")
    assert not out.exists()
    assert cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", out).exit_code == 0
