"""The nightly story end to end: a corpus directory grows by 10%, the nightly-style spec is rerun,
only the new rows are encoded (into a new shard), the index gets just those vectors appended, and
the index answers queries for them. Tiny random BERT, real onnxruntime / FAISS / parquet."""

from __future__ import annotations

import json
import textwrap

from click.testing import CliRunner

from embedpipe.cli import main
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import open_index
from embedpipe.retrieval import search_texts
from tests.helpers import WORDS, write_corpus


def texts(start: int, n: int) -> list[str]:
    return [" ".join(WORDS[(i * 11 + j * 5) % len(WORDS)] for j in range(6)) + f" number {i}"
            for i in range(start, start + n)]


def test_a_grown_corpus_encodes_only_new_rows_and_the_index_finds_them(tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus / "day1.parquet", texts(0, 100), ids=[f"d{i}" for i in range(100)])
    (tmp_path / "nightly.yaml").write_text(textwrap.dedent(f"""
        output_dir: out
        encode:
          corpus: corpus/
          model: {tiny_model_dir}
          runner: local
          rows_per_shard: 64
        index:
          factory: IVF2,Flat
          tuning_queries: 10
          append: true
    """))

    def run():
        result = CliRunner().invoke(main, ["run", str(tmp_path / "nightly.yaml")])
        assert result.exit_code == 0, result.output
        return result.output, json.loads(result.output.strip().splitlines()[-1])["stages"]

    _, stages = run()
    assert stages == {"encode": "ran", "index": "ran"}
    before = open_vectors(tmp_path / "out" / "vectors").manifest

    write_corpus(corpus / "day2.parquet", texts(100, 10), ids=[f"d{i}" for i in range(100, 110)])  # +10%
    plan = CliRunner().invoke(main, ["run", str(tmp_path / "nightly.yaml"), "--dry-run"]).output
    assert "encodes the ids not yet encoded" in plan
    output, stages = run()
    assert stages == {"encode": "ran", "index": "appended"}
    assert "110 vectors (10 encoded, 100 reused)" in output                  # counted in the log ...
    manifest = open_vectors(tmp_path / "out" / "vectors").manifest
    assert manifest["last_run"]["encoded_rows"] == 10 and manifest["rows"] == 110   # ... and the manifest
    assert manifest["shards"][:len(before["shards"])] == before["shards"]    # published shards untouched

    index = open_index(tmp_path / "out" / "index")
    assert index.info["n"] == 110 and index.info["appends"][-1]["rows"] == 10
    hits = search_texts(index, texts(100, 10), k=1)
    assert [h[0].id for h in hits] == [f"d{i}" for i in range(100, 110)]

    _, stages = run()
    assert stages == {"encode": "skipped", "index": "skipped"}
