"""The column rules every parquet reader shares (embedpipe/formats/columns.py), checked through each
reader that applies them: the corpus (encode, search --corpus), labeled data (classify train/test),
unlabeled data (predict), BEIR queries and qrels. A file one command takes, the others take."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.beir import read_qrels, read_queries
from embedpipe.formats.corpus import open_corpus
from embedpipe.formats.labeled import read_labeled

TEXTS = ["a dog", "a cat", "a dog"]


def write(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path


def flag(field: str, value: str | None) -> str:
    """How the CLI shows a config field."""
    return "--" + field.replace("_", "-") + (f" {value}" if value else "")


def refused(read, *fragments: str) -> BadInput:
    with pytest.raises(BadInput) as caught:
        read()
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return caught.value


# --- readers of a text column: (write a file whose text column holds `texts`, read it) -> texts read ---

def corpus_texts(path, texts):
    write(path, {"doc": list(range(len(texts))), "body": texts})
    corpus = open_corpus(str(path), text_column="body", id_column="doc")
    return [t for batch in corpus.iter_batches(2) for t in batch.column(1).to_pylist()]


def labeled_texts(path, texts):
    write(path, {"body": texts, "label": ["x"] * len(texts)})
    return read_labeled(str(path), "body", "label").texts


def predict_texts(path, texts):
    write(path, {"id": list(range(len(texts))), "body": texts})
    return read_labeled(str(path), "body", None).texts


def query_texts(path, texts):
    write(path, {"id": [f"q{i}" for i in range(len(texts))], "text": texts})
    return read_queries(path)[1]


TEXT_READERS = {"corpus": (corpus_texts, "body"), "labeled": (labeled_texts, "body"),
                "predict": (predict_texts, "body"), "queries": (query_texts, "text")}

TEXT_TYPES = {
    "string": pa.array(TEXTS, pa.string()),
    "large_string": pa.array(TEXTS, pa.large_string()),
    "string_view": pa.array(TEXTS, pa.string_view()),
    "dictionary": pa.array(TEXTS).dictionary_encode(),
    "dictionary of large_string": pa.array(TEXTS, pa.large_string()).dictionary_encode(),
}

NOT_TEXT = {
    "int64": pa.array([1, 2, 3]),
    "double": pa.array([1.5, 2.5, 3.5]),
    "binary": pa.array([b"a", b"b", b"c"]),
    "bool": pa.array([True, False, True]),
    "list<element: string>": pa.array([["a"], ["b"], ["c"]]),
    "struct<t: string>": pa.array([{"t": "a"}, {"t": "b"}, {"t": "c"}]),
}


@pytest.mark.parametrize("reader", list(TEXT_READERS))
@pytest.mark.parametrize("kind", list(TEXT_TYPES))
def test_text_column_types_every_reader_takes(reader, kind, tmp_path):
    read, _ = TEXT_READERS[reader]
    texts = read(tmp_path / "f.parquet", TEXT_TYPES[kind])
    assert texts == TEXTS and all(type(t) is str for t in texts)


@pytest.mark.parametrize("reader", list(TEXT_READERS))
def test_pandas_categorical_text_is_read_as_strings(reader, tmp_path):
    """A column as `df["t"].astype("category").to_parquet()` writes it, put in each reader's file."""
    import pandas as pd

    read, _ = TEXT_READERS[reader]
    path = tmp_path / "f.parquet"
    pd.DataFrame({"t": pd.Categorical(TEXTS)}).to_parquet(path)
    column = pq.read_table(path).column("t")
    assert pa.types.is_dictionary(column.type)
    assert read(path, column) == TEXTS


@pytest.mark.parametrize("reader", list(TEXT_READERS))
@pytest.mark.parametrize("kind", list(NOT_TEXT))
def test_text_column_of_another_type_is_one_line_naming_file_column_and_type(reader, kind, tmp_path):
    read, column = TEXT_READERS[reader]
    path = tmp_path / "f.parquet"
    refused(lambda: read(path, NOT_TEXT[kind]), str(path), f"text column {column!r} holds {kind}, not strings")


@pytest.mark.parametrize("reader", list(TEXT_READERS))
def test_invalid_utf8_text_is_one_line(reader, tmp_path):
    read, _ = TEXT_READERS[reader]
    raw = pa.array([b"fine", b"\xc3\x28 broken", b"ok"]).view(pa.string())
    if reader == "corpus":   # open_corpus streams; the encode job checks each batch (check_utf8)
        from embedpipe.formats.corpus import check_utf8

        with pytest.raises(BadInput, match=r"1 row\(s\) hold text that is not valid UTF-8 \(ids: 1\)"):
            check_utf8(pa.array([0, 1, 2]), pa.array(raw).dictionary_encode())
        return
    refused(lambda: read(tmp_path / "f.parquet", raw), "not valid UTF-8")


# --- readers of an id column: (write a file whose id column holds `ids`, read it) -> ids read ---------

def corpus_ids(path, ids):
    write(path, {"doc": ids, "text": [f"text {i}" for i in range(len(ids))]})
    corpus = open_corpus(str(path), id_column="doc")
    corpus.check_unique_ids()
    return [i for batch in corpus.iter_batches(2) for i in batch.column(0).to_pylist()]


def query_ids(path, ids):
    write(path, {"id": ids, "text": [f"text {i}" for i in range(len(ids))]})
    return read_queries(path)[0]


def qrels_query_ids(path, ids):
    write(path, {"query_id": ids, "doc_id": ["d1"] * len(ids), "relevance": [1] * len(ids)})
    return list(read_qrels(path))


def qrels_doc_ids(path, ids):
    write(path, {"query_id": ["q1"] * len(ids), "doc_id": ids, "relevance": [1] * len(ids)})
    return list(read_qrels(path)["q1"])


ID_READERS = {"corpus": (corpus_ids, "doc"), "queries": (query_ids, "id"),
              "qrels query_id": (qrels_query_ids, "query_id"), "qrels doc_id": (qrels_doc_ids, "doc_id")}

ID_TYPES = {
    "int64": pa.array([3, 1, 2]),
    "int32": pa.array([3, 1, 2], pa.int32()),
    "uint8": pa.array([3, 1, 2], pa.uint8()),
    "string": pa.array(["b", "a", "c"]),
    "large_string": pa.array(["b", "a", "c"], pa.large_string()),
    "string_view": pa.array(["b", "a", "c"], pa.string_view()),
    "dictionary of strings": pa.array(["b", "a", "c"]).dictionary_encode(),
}

NOT_IDS = {
    "list<element: int64>": pa.array([[1], [2], [3]]),
    "struct<k: int64>": pa.array([{"k": 1}, {"k": 2}, {"k": 3}]),
    "map<string, int64": pa.array([[("a", 1)], [("b", 2)], [("c", 3)]], pa.map_(pa.string(), pa.int64())),
    "double": pa.array([1.0, 2.0, 3.0]),
    "bool": pa.array([True, False, None]),
    "binary": pa.array([b"a", b"b", b"c"]),
}


@pytest.mark.parametrize("reader", list(ID_READERS))
@pytest.mark.parametrize("kind", list(ID_TYPES))
def test_id_column_types_every_reader_takes(reader, kind, tmp_path):
    read, _ = ID_READERS[reader]
    ids = read(tmp_path / "f.parquet", ID_TYPES[kind])
    expected = ID_TYPES[kind].to_pylist()
    if reader.startswith("qrels"):   # qrels keys are strings: ids are compared as strings
        expected = [str(i) for i in expected]
    assert ids == expected


@pytest.mark.parametrize("reader", list(ID_READERS))
@pytest.mark.parametrize("kind", list(NOT_IDS))
def test_id_column_of_another_type_is_one_line_naming_the_column(reader, kind, tmp_path):
    read, column = ID_READERS[reader]
    path = tmp_path / "f.parquet"
    refused(lambda: read(path, NOT_IDS[kind]), str(path), f"id column {column!r} holds {kind}",
            "not integers or strings")


@pytest.mark.parametrize("reader", list(ID_READERS))
@pytest.mark.parametrize("ids", [["a", None, "c"], [7, 8, None], pa.array(["a", "b", None]).dictionary_encode()],
                         ids=["string", "int", "dictionary"])
def test_null_id_is_one_line_naming_the_row(reader, ids, tmp_path):
    read, column = ID_READERS[reader]
    row = ids.to_pylist().index(None) if isinstance(ids, pa.Array) else ids.index(None)
    path = tmp_path / "f.parquet"
    refused(lambda: read(path, ids), str(path), f"id column {column!r} is null at row {row}", "every row needs an id")


# --- a missing column: the same line everywhere, naming the field that names another ---------------

MISSING = {
    "corpus text": (lambda p: open_corpus(str(p), text_column="body", id_column="doc"), {"doc": [1], "content": ["x"]},
                    "{p} has no text column 'body' (columns: doc, content); name one with text_column", "text_column"),
    "corpus id": (lambda p: open_corpus(str(p), text_column="body", id_column="doc"), {"key": [1], "body": ["x"]},
                  "{p} has no id column 'doc' (columns: key, body); name one with id_column", "id_column"),
    "labeled text": (lambda p: read_labeled(str(p), "body", "label"), {"text": ["x"], "label": ["y"]},
                     "{p} has no text column 'body' (columns: text, label); name one with text_column", "text_column"),
    "labeled label": (lambda p: read_labeled(str(p), "text", "kind"), {"text": ["x"], "label": ["y"]},
                      "{p} has no label column 'kind' (columns: text, label); name one with label_column",
                      "label_column"),
    "predict text": (lambda p: read_labeled(str(p), "body", None), {"id": [1], "text": ["x"]},
                     "{p} has no text column 'body' (columns: id, text); name one with text_column", "text_column"),
    "queries id": (read_queries, {"qid": ["q1"], "text": ["x"]},
                   "queries file {p} has no id column 'id' (columns: qid, text); name one with queries_columns",
                   "queries_columns"),
    "queries text": (read_queries, {"id": ["q1"], "query": ["x"]},
                     "queries file {p} has no text column 'text' (columns: id, query); name one with queries_columns",
                     "queries_columns"),
    "qrels doc_id": (read_qrels, {"query_id": ["q1"], "doc": ["d1"], "relevance": [1]},
                     "qrels file {p} has no id column 'doc_id' (columns: query_id, doc, relevance); name one with "
                     "qrels_columns", "qrels_columns"),
    "qrels relevance": (read_qrels, {"query_id": ["q1"], "doc_id": ["d1"], "score": [1]},
                        "qrels file {p} has no relevance column 'relevance' (columns: query_id, doc_id, score); "
                        "name one with qrels_columns", "qrels_columns"),
}


@pytest.mark.parametrize("case", list(MISSING))
def test_missing_column_is_reported_the_same_way_by_every_reader(case, tmp_path):
    read, columns, expected, field = MISSING[case]
    path = write(tmp_path / "f.parquet", columns)
    error = refused(lambda: read(path))
    assert str(error) == expected.format(p=path)
    assert error.fields == ((field,) if field else ())
    if field:
        assert error.render(flag).endswith(f"name one with {flag(field, None)}")


@pytest.mark.parametrize("read", [lambda p: open_corpus(str(p)), lambda p: read_labeled(str(p), "text", None),
                                  read_queries], ids=["corpus", "labeled", "queries"])
def test_two_columns_of_one_name_are_refused(read, tmp_path):
    path = tmp_path / "f.parquet"
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["x"]), pa.array(["y"])], names=["id", "text", "text"])
    pq.write_table(table, path)
    refused(lambda: read(path), str(path), "more than one column named 'text'")


def test_a_dictionary_of_numbers_is_not_text():
    """Parquet reads such a column back as plain numbers; an arrow table built in memory keeps it."""
    from embedpipe.formats.columns import Column, check_columns

    schema = pa.schema([("text", pa.dictionary(pa.int32(), pa.int64()))])
    with pytest.raises(BadInput, match=r"t\.parquet: text column 'text' holds dictionary<values=int64"):
        check_columns(schema, "t.parquet", [Column("text", "text", "text_column")])
