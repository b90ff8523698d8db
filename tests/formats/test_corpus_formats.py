"""A corpus in every format users already have -- parquet, JSON Lines (BEIR's `_id`), CSV, compressed,
a directory, a glob, a Hugging Face save_to_disk directory -- encodes to the same vectors; bad input
in each is one line naming the file and the line."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.corpus import open_corpus
from embedpipe.formats.vectors import open_vectors
from tests.helpers import TEXTS, assert_one_line_error, encode_with_each_runner, run_cli

IDS = [f"doc-{i}" for i in range(len(TEXTS))]
TITLES = ["Cats", None, "Greeting", "", "X", "Unicode", "Sky", "Books", "Birds", "Writing"]


def write_jsonl(path: Path, rows: list[dict], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def write_csv(path: Path, header: list[str], rows: list[list], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def encode(corpus, model, out, *extra) -> tuple[list, np.ndarray]:
    result = run_cli("encode", corpus, "--model", model, "--runner", "local", "--threads", "1", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    ids, vectors = open_vectors(out).read_all()
    return ids.to_pylist(), vectors


@pytest.fixture(scope="module")
def parquet_vectors(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    pq.write_table(pa.table({"id": IDS, "text": TEXTS}), root / "c.parquet")
    return encode(root / "c.parquet", tiny_model_dir, root / "parquet.vectors")


def same_vectors(got, expected):
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])


def as_jsonl(tmp_path, opener=open, name="c.jsonl"):
    return write_jsonl(tmp_path / name, [{"_id": i, "text": t} for i, t in zip(IDS, TEXTS)], opener)


def as_csv(tmp_path, name="c.csv", opener=open):
    return write_csv(tmp_path / name, ["id", "text"], [[i, t] for i, t in zip(IDS, TEXTS)], opener)


@pytest.mark.parametrize("make", [
    lambda p: as_jsonl(p),
    lambda p: as_jsonl(p, gzip.open, "c.jsonl.gz"),
    lambda p: as_csv(p),
    lambda p: as_csv(p, "c.csv.gz", gzip.open),
], ids=["jsonl with _id", "jsonl.gz", "csv", "csv.gz"])
def test_the_same_corpus_in_each_format_gives_the_same_vectors(make, parquet_vectors, tiny_model_dir, tmp_path):
    corpus = make(tmp_path)
    same_vectors(encode(corpus, tiny_model_dir, tmp_path / "v"), parquet_vectors)
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert manifest["source"]["format"] == ("jsonl" if "jsonl" in corpus.name else "csv")


def test_a_zstd_directory_and_a_glob_of_files(parquet_vectors, tiny_model_dir, tmp_path):
    import pyarrow as pa

    (tmp_path / "parts").mkdir()
    for part, rows in enumerate([range(0, 4), range(4, 10)]):
        data = "".join(json.dumps({"_id": IDS[i], "text": TEXTS[i]}) + "\n" for i in rows).encode()
        with pa.CompressedOutputStream(str(tmp_path / "parts" / f"{part}.jsonl.zst"), "zstd") as f:
            f.write(data)
    (tmp_path / "parts" / "dataset_info.json").write_text("{}")  # metadata beside the data is left out
    same_vectors(encode(tmp_path / "parts", tiny_model_dir, tmp_path / "dir.vectors"), parquet_vectors)
    same_vectors(encode(f"{tmp_path}/parts/*.jsonl.zst", tiny_model_dir, tmp_path / "glob.vectors"), parquet_vectors)


def test_a_save_to_disk_dataset_encodes(parquet_vectors, tiny_model_dir, tmp_path):
    import datasets  # the dev extra declares it: a missing datasets fails here instead of skipping
    dataset = datasets.Dataset.from_dict({"id": IDS, "text": TEXTS})
    dataset.save_to_disk(str(tmp_path / "ds"), max_shard_size="1KB")  # several .arrow files, in order
    assert len(list((tmp_path / "ds").glob("*.arrow"))) > 1
    same_vectors(encode(tmp_path / "ds", tiny_model_dir, tmp_path / "v"), parquet_vectors)
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "dd"))
    result = run_cli("encode", tmp_path / "dd", "--model", tiny_model_dir, "--runner", "local")
    assert_one_line_error(result, "is a Hugging Face DatasetDict (splits: train)", f"{tmp_path / 'dd'}/train")


def test_title_column_joins_title_and_text_as_beir_does(tiny_model_dir, tmp_path):
    joined = [((t or "") + " " + x).strip() for t, x in zip(TITLES, TEXTS)]
    pq.write_table(pa.table({"id": IDS, "text": joined}), tmp_path / "joined.parquet")
    pq.write_table(pa.table({"id": IDS, "text": TEXTS, "title": TITLES}), tmp_path / "titled.parquet")
    expected = encode(tmp_path / "joined.parquet", tiny_model_dir, tmp_path / "joined.vectors")
    same_vectors(encode(tmp_path / "titled.parquet", tiny_model_dir, tmp_path / "t.vectors", "--title-column", "title"),
                 expected)
    # A BEIR folder: corpus.jsonl with _id, title and text, joined without being asked.
    (tmp_path / "beir").mkdir()
    write_jsonl(tmp_path / "beir" / "corpus.jsonl",
                [{"_id": i, "title": t or "", "text": x} for i, t, x in zip(IDS, TITLES, TEXTS)])
    same_vectors(encode(tmp_path / "beir", tiny_model_dir, tmp_path / "b.vectors"), expected)


def test_format_overrides_the_file_name(parquet_vectors, tiny_model_dir, tmp_path):
    corpus = as_jsonl(tmp_path, name="corpus.txt")
    result = run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local")
    assert_one_line_error(result, f"cannot tell from its name what {corpus} holds", "--format jsonl or --format csv")
    same_vectors(encode(corpus, tiny_model_dir, tmp_path / "v", "--format", "jsonl"), parquet_vectors)


def test_search_corpus_reads_a_jsonl_corpus_with_the_recorded_columns(tiny_model_dir, tmp_path):
    corpus = as_jsonl(tmp_path)
    encode(corpus, tiny_model_dir, tmp_path / "v")
    assert run_cli("index", tmp_path / "v", "--out", tmp_path / "i").exit_code == 0
    result = run_cli("search", tmp_path / "i", TEXTS[3], "-k", "3", "--json", "--corpus", corpus)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout.strip().splitlines()[-1])["hits"]
    assert hits[0]["id"] == IDS[3] and all(h["text"] == TEXTS[IDS.index(h["id"])] for h in hits)


# --- bad input: one line naming the file and the line -------------------------------------------------

def lines(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD = {
    "jsonl line not JSON": ("c.jsonl", '{"_id": "a", "text": "x"}\n\n{"_id": "b", text: "y"}\n',
                            ["c.jsonl line 3: not JSON"]),
    "jsonl line not an object": ("c.jsonl", '{"_id": "a", "text": "x"}\n["b", "y"]\n',
                                 ["c.jsonl line 2: a list where an object is expected"]),
    "jsonl id changes type": ("c.jsonl", '{"_id": "a", "text": "x"}\n{"_id": 7, "text": "y"}\n',
                              ["c.jsonl line 2: '_id' is a number, where earlier lines hold a string"]),
    "jsonl text a number": ("c.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": 5}\n',
                            ["c.jsonl line 2: 'text' is a number"]),
    "csv ragged row": ("c.csv", 'id,text\n1,"a quoted\nvalue"\n2,b\n3,c,d\n',
                       ["c.csv line 5: 3 field(s) where the header has 2"]),
    "csv short row": ("c.csv", "id,text\n1,a\n2\n", ["c.csv line 3: 1 field(s) where the header has 2"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_file_and_line(case, tmp_path):
    name, text, fragments = BAD[case]
    corpus = lines(tmp_path / name, text)
    result = run_cli("encode", corpus, "--runner", "local", "--out", tmp_path / "v")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "v").exists()


def test_a_jsonl_line_far_into_a_big_file_is_named_by_its_line(tmp_path, monkeypatch):
    """Blocks of lines are parsed one at a time: the line number counts across blocks."""
    import embedpipe.formats.readers.jsonl as jsonl

    monkeypatch.setattr(jsonl, "JSON_BLOCK_BYTES", 256)
    rows = [json.dumps({"_id": f"d{i}", "text": f"text {i}"}) for i in range(500)]
    rows[321] = '{"_id": "d321", "text": "unterminated}'
    corpus = lines(tmp_path / "c.jsonl", "\n".join(rows) + "\n")
    with pytest.raises(BadInput, match="c.jsonl line 322: not JSON"):
        open_corpus(str(corpus))


def test_mixed_formats_in_a_directory_need_format(tmp_path):
    (tmp_path / "d").mkdir()
    as_jsonl(tmp_path / "d")
    as_csv(tmp_path / "d")
    result = run_cli("encode", tmp_path / "d", "--runner", "local")
    assert_one_line_error(result, "holds files of more than one kind (1 csv, 1 jsonl); choose with --format csv "
                                  "or --format jsonl")
    assert open_corpus(str(tmp_path / "d"), file_format="csv").files == [str(tmp_path / "d" / "c.csv")]


def test_hf_urls_offline_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_cli("encode", "hf://datasets/BeIR/scifact/corpus.jsonl.gz", "--runner", "local")
    assert_one_line_error(result, "the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1")


@pytest.mark.slow
def test_ray_encodes_a_jsonl_corpus_with_titles_like_the_local_runner(tiny_model_dir, tmp_path, ray_cluster):
    """Ray actors read their pieces with embedpipe's own JSON Lines reader: BEIR's title joined to the text
    as the local runner joins it."""

    (tmp_path / "c").mkdir()
    for f in range(2):
        write_jsonl(tmp_path / "c" / f"{f}.jsonl", [{"_id": f"d{f}-{i}", "title": TITLES[i % 10] or "",
                                                     "text": f"{TEXTS[(i + f) % 10]} {i}"} for i in range(30)])
    runs = encode_with_each_runner(tmp_path / "c", tiny_model_dir, tmp_path, title_column="title")
    (local_ids, local), (ray_ids, ray) = runs["local"], runs["ray"]
    assert ray_ids.to_pylist() == local_ids.to_pylist() and len(local_ids) == 60
    np.testing.assert_allclose(ray, local, atol=1e-6)
