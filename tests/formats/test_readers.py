"""The readers behind opening a corpus (embedpipe/formats/readers/): one per format, chosen by name,
and each corpus file inspected once."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.corpus import open_corpus
from embedpipe.formats.readers import FORMATS, READERS, reader_for
from embedpipe.formats.readers.jsonl import JsonLinesReader
from embedpipe.formats.readers.parquet import ParquetReader


def test_every_format_a_corpus_may_name_has_its_reader():
    assert tuple(READERS) == FORMATS
    assert all(reader_for(name).format == name for name in FORMATS)


def test_an_unknown_format_is_refused_naming_the_known_ones():
    with pytest.raises(BadInput, match=r"^format=xlsx is not one of parquet, jsonl, csv, arrow$"):
        reader_for("xlsx")


def test_each_parquet_file_is_opened_once_and_its_footer_gives_the_rows(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    folder.mkdir()
    for part, n in enumerate([3, 5, 2]):
        pq.write_table(pa.table({"id": [f"p{part}-{i}" for i in range(n)], "text": ["t"] * n}),
                       folder / f"part-{part}.parquet")
    inspected, counted = Counter(), Counter()
    inspect, count = ParquetReader._inspect, ParquetReader.count_rows
    monkeypatch.setattr(ParquetReader, "_inspect", lambda self, fs, path: (inspected.update([path]),
                                                                          inspect(self, fs, path))[1])
    monkeypatch.setattr(ParquetReader, "count_rows", lambda self, *args: (counted.update([args[1]]),
                                                                         count(self, *args))[1])
    corpus = open_corpus(str(folder))
    assert corpus.file_rows == [3, 5, 2]
    assert sorted(inspected.values()) == [1, 1, 1] and not counted


def test_a_jsonl_file_is_counted_by_one_pass_over_its_id_column(tmp_path, monkeypatch):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"t{i}", "title": "x"}) + "\n" for i in range(7)))
    columns_read = []
    batches = JsonLinesReader.batches
    monkeypatch.setattr(JsonLinesReader, "batches", lambda self, fs, p, columns, *rest: (
        columns_read.append(list(columns)), batches(self, fs, p, columns, *rest))[1])
    corpus = open_corpus(str(path))
    assert (corpus.rows, corpus.id_column, columns_read) == (7, "_id", [["_id"]])
