"""The package's data files ship with it (the Docker image is checked in test_docker.py)."""

from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def test_sample_corpus_ships_with_the_package():
    table = pq.read_table(ROOT / "embedpipe" / "data" / "sample_corpus.parquet")
    assert table.column_names == ["id", "text", "label"] and table.num_rows == 300
    assert len(set(table["label"].to_pylist())) == 10
    assert (ROOT / "embedpipe" / "data" / "LICENSE-WordNet.txt").exists()
