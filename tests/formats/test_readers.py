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


def write_every_format(folder, ids: list[str], texts: list[str]) -> dict[str, str]:
    """The same rows as parquet (row groups of 7, the text categorical), JSON Lines and CSV."""
    folder.mkdir()
    table = pa.table({"id": ids, "text": pa.array(texts).dictionary_encode()})
    pq.write_table(table, folder / "c.parquet", row_group_size=7)
    (folder / "c.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    (folder / "c.csv").write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, texts)))
    return {name: str(folder / f"c.{name}") for name in ("parquet", "jsonl", "csv")}


@pytest.mark.parametrize("start, stop", [(0, 5), (6, 8), (13, 30), (40, 50), (0, None), (44, None)])
def test_a_row_range_reads_the_same_rows_in_every_format(tmp_path, start, stop):
    ids, texts = [f"d{i:02d}" for i in range(50)], [f"text {i % 4}" for i in range(50)]
    for name, path in write_every_format(tmp_path / "c", ids, texts).items():
        corpus = open_corpus(path)
        batches = list(corpus.read_rows(corpus.files[0], 4, start, stop))
        assert all(0 < b.num_rows <= 4 and b.schema.names == ["id", "text"] for b in batches), name
        assert all(pa.types.is_string(b.schema.field("text").type) for b in batches), name   # decoded
        rows = [(i, t) for b in batches for i, t in zip(b.column(0).to_pylist(), b.column(1).to_pylist())]
        assert rows == list(zip(ids, texts))[start:stop], name


def test_a_parquet_row_range_reads_only_the_row_groups_that_hold_it(tmp_path, monkeypatch):
    path = write_every_format(tmp_path / "c", [f"d{i:02d}" for i in range(50)], ["t"] * 50)["parquet"]
    corpus = open_corpus(path)
    asked = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda self, *args, row_groups=None, **kwargs: (
        asked.append(list(row_groups)), iter_batches(self, *args, row_groups=row_groups, **kwargs))[1])
    ids = [i for b in corpus.read_rows(corpus.files[0], 4, 13, 30) for i in b.column(0).to_pylist()]
    assert ids == [f"d{i:02d}" for i in range(13, 30)]
    assert asked == [[1, 2, 3, 4]]   # rows 7-13, 14-20, 21-27, 28-34 of 7-row groups
