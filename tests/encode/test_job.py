"""The encode job: output contract, order, sharding, empty-text policy, overwrite safety, inputs."""

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.errors import EmbedpipeError
from embedpipe.formats.vectors import open_vectors
from embedpipe.fsio import file_sha256
from tests.helpers import TEXTS, write_corpus


def job(tiny_model_dir, corpus, out, **kwargs):
    spec = kwargs.pop("spec", EncoderSpec(model=str(tiny_model_dir)))
    return EncodeJob(str(corpus), out=str(out), runner=kwargs.pop("runner", "local"), spec=spec, **kwargs)


def test_vector_directory_follows_the_contract(tiny_model_dir, corpus, tmp_path):
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", rows_per_shard=4))
    files = sorted(p.name for p in result.out.iterdir())
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert files == sorted(["manifest.json", *(s["file"] for s in manifest["shards"])])
    numbers = [re.fullmatch(r"part-(\d{5})-[0-9a-f]{8}\.parquet", f).group(1) for f in files[1:]]
    assert numbers == ["00000", "00001", "00002"]
    assert manifest["rows"] == len(TEXTS) and manifest["dim"] == 32 and manifest["dtype"] == "float32"
    assert [s["rows"] for s in manifest["shards"]] == [4, 4, 2]
    for shard in manifest["shards"]:
        assert shard["sha256"] == file_sha256(result.out / shard["file"])
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True and manifest["max_length"] == 64
    assert manifest["model"]["content_hash"] and manifest["source"]["fingerprint"]
    assert [s["source"]["start"] for s in manifest["shards"]] == [0, 4, 8]   # the row range each holds
    schema = pq.read_schema(result.out / manifest["shards"][0]["file"])
    assert schema.field("vector").type == pa.list_(pa.float32(), 32)
    assert not list(tmp_path.glob(".v.staging-*"))


def test_rows_keep_corpus_order_whatever_the_window_and_batch(tiny_model_dir, tmp_path):
    texts = [f"{'word ' * (i % 7 + 1)}{i}" for i in range(50)]
    corpus = write_corpus(tmp_path / "c.parquet", texts, ids=[f"doc-{i}" for i in range(50)])
    small = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "a", window=7, batch_size=3)).out
    large = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "b", window=1000, batch_size=64)).out
    ids_a, vectors_a = open_vectors(small).read_all()
    ids_b, vectors_b = open_vectors(large).read_all()
    assert ids_a.to_pylist() == ids_b.to_pylist() == [f"doc-{i}" for i in range(50)]
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)
    one_by_one = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir)))
    np.testing.assert_allclose(vectors_a[17], one_by_one.encode([texts[17]])[0], atol=1e-5)


def test_a_directory_of_parquet_files_is_one_corpus(tiny_model_dir, tmp_path):
    (tmp_path / "corpus").mkdir()
    write_corpus(tmp_path / "corpus" / "b.parquet", TEXTS[5:], ids=list(range(5, 10)))
    write_corpus(tmp_path / "corpus" / "a.parquet", TEXTS[:5], ids=list(range(5)))
    result = encode_corpus(job(tiny_model_dir, tmp_path / "corpus", tmp_path / "v"))
    assert open_vectors(result.out).read_all()[0].to_pylist() == list(range(10))


def test_default_output_is_named_after_corpus_and_pooling(tiny_model_dir, corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = encode_corpus(EncodeJob(str(corpus), runner="local", spec=EncoderSpec(model=str(tiny_model_dir),
                                                                                   pooling="cls")))
    assert result.out.name == "corpus.cls.vectors" and (tmp_path / "corpus.cls.vectors" / "manifest.json").exists()


def test_fsspec_url_corpus(tiny_model_dir, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/bucket/corpus.parquet", "wb") as f:
        pq.write_table(pa.table({"id": [1, 2], "text": ["a cat", "a dog"]}), f)
    result = encode_corpus(job(tiny_model_dir, "memory://bucket/corpus.parquet", tmp_path / "v"))
    assert result.manifest["rows"] == 2


def test_null_or_blank_text_stops_before_anything_is_written(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["fine", None, "  ", "ok"], ids=["a", "b", "c", "d"])
    with pytest.raises(EmbedpipeError, match=r"2 row\(s\) have a null or blank text \(ids: 'b', 'c'\)"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_skip_policy_leaves_blank_rows_out_and_counts_them(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["fine", None, "  ", "ok"], ids=["a", "b", "c", "d"])
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", empty_text="skip"))
    assert open_vectors(result.out).read_all()[0].to_pylist() == ["a", "d"]
    assert result.manifest["skipped_rows"] == 2


def test_a_100k_character_text_is_truncated_not_fatal(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["cat " * 25_000, "dog"])
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v"))
    _, vectors = open_vectors(result.out).read_all()
    assert np.isfinite(vectors).all() and result.manifest["max_length"] == 64


def test_existing_result_survives_until_the_new_one_is_complete(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "v"
    encode_corpus(job(tiny_model_dir, corpus, out))
    before = (out / "manifest.json").read_text()
    assert encode_corpus(job(tiny_model_dir, corpus, out)).up_to_date   # same corpus and config: a no-op
    with pytest.raises(EmbedpipeError, match="encoded with another config .*pooling mean -> max.*overwrite=true"):
        encode_corpus(job(tiny_model_dir, corpus, out, spec=EncoderSpec(model=str(tiny_model_dir), pooling="max")))
    broken = write_corpus(tmp_path / "broken.parquet", ["fine", None])
    with pytest.raises(EmbedpipeError):
        encode_corpus(job(tiny_model_dir, broken, out, overwrite=True, empty_text="error"))
    assert (out / "manifest.json").read_text() == before
    encode_corpus(job(tiny_model_dir, corpus, out, overwrite=True, spec=EncoderSpec(model=str(tiny_model_dir),
                                                                                   pooling="max")))
    assert json.loads((out / "manifest.json").read_text())["pooling"] == "max"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.parquet", "corpus.parquet", "v"]


def test_float16_vectors(tiny_model_dir, corpus, tmp_path):
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", dtype="float16"))
    first = result.manifest["shards"][0]["file"]
    assert pq.read_schema(result.out / first).field("vector").type == pa.list_(pa.float16(), 32)
    _, vectors = open_vectors(result.out).read_all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)


def test_second_run_reuses_the_cached_export(tiny_model_dir, export_cache):
    spec = EncoderSpec(model=str(tiny_model_dir))
    TextEncoder.load(spec)
    exports = sorted((export_cache / "onnx").iterdir())
    TextEncoder.load(spec)
    assert sorted((export_cache / "onnx").iterdir()) == exports


@pytest.mark.slow
def test_int8_and_optimized_exports_stay_close_to_fp32(tiny_model_dir):
    reference = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir))).encode(TEXTS)
    for options in ({"quantize": "int8"}, {"optimize": "O2"}):
        vectors = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), **options)).encode(TEXTS)
        assert ((vectors * reference).sum(1)).min() > 0.9, options


@pytest.mark.parametrize("nodes, workers, threads, expected", [
    ([2], None, None, (2, 1, 1.0)),         # this 2-core machine: two single-thread actors
    ([1, 1], None, None, (2, 1, 1.0)),      # two 1-CPU nodes: one actor on each (once: none could start)
    ([16], None, None, (4, 4, 4.0)),        # larger nodes: 4 threads per session
    ([2], None, 2, (1, 2, 2.0)),
    ([1, 1], 3, None, (3, 1, 0.5)),         # more actors than whole CPUs: they share, still per node
    ([8, 1], None, 4, (2, 4, 4.0)),         # 4-thread actors fit only the big node
])
def test_actor_layout_fits_every_actor_on_one_node(nodes, workers, threads, expected):
    from embedpipe.encode.runners.ray_pool import actor_layout, actors_fitting

    layout = actor_layout(nodes, workers, threads)
    assert (layout.workers, layout.threads, layout.actor_cpus) == expected
    assert actors_fitting(nodes, layout.actor_cpus) >= layout.workers


def test_corpus_rewritten_with_the_same_size_and_rows_gets_a_new_fingerprint(tmp_path):
    import os

    from embedpipe.formats.corpus import open_corpus

    path = write_corpus(tmp_path / "c.parquet", ["abc", "def"])
    before, size = open_corpus(path).fingerprint(), os.path.getsize(path)
    write_corpus(path, ["abd", "def"])
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000_000))
    assert os.path.getsize(path) == size
    assert open_corpus(path).fingerprint() != before


def test_the_default_runner_encodes_a_small_corpus_in_process(tiny_model_dir, corpus, tmp_path, caplog):
    """`auto` (the default) picks the local runner for a small corpus with no cluster named: no Ray starts."""
    caplog.set_level("INFO", logger="embedpipe.encode")
    result = encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "v"), spec=EncoderSpec(model=str(tiny_model_dir))))
    assert result.manifest["runner"] == "local" and result.manifest["runner_requested"] == "auto"
    assert result.manifest["last_run"]["runner"] == "local"
    assert "runner: local (10 rows to encode < 50,000 and no cluster named" in caplog.text


@pytest.mark.parametrize(("runner", "rows", "address", "chosen"), [
    ("auto", 49_999, None, "local"),
    ("auto", 50_000, None, "ray"),
    ("auto", 10, "ray://head:10001", "ray"),
    ("local", 10**7, "ray://head:10001", "local"),   # an explicit runner is kept
    ("ray", 10, None, "ray"),
])
def test_auto_runner_choice(runner, rows, address, chosen):
    from embedpipe.encode.runners import choose_runner

    assert choose_runner(runner, rows, address)[0] == chosen


def test_local_progress_moves_with_each_window_not_each_shard(tiny_model_dir, corpus, tmp_path, monkeypatch):
    from embedpipe.progress import Progress

    heard = []
    original = Progress.update
    monkeypatch.setattr(Progress, "update", lambda self, n: (heard.append(n), original(self, n))[1])
    encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", window=4))   # one shard: rows_per_shard 100,000

    rows = pq.read_metadata(corpus).num_rows
    assert sum(heard) == rows and heard == [4] * (rows // 4) + ([rows % 4] if rows % 4 else [])
