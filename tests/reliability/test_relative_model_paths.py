"""A model given as a relative path still serves search, evaluate and predict run from another
directory. The manifest keeps the name the user gave (for display) and the directory it resolved to
(absolute), which is what is loaded later; the content hash still has to match."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.index import open_index
from embedpipe.retrieval import search_texts
from embedpipe.retrieval.evaluate import evaluate
from tests.helpers import TEXTS, run_cli, write_corpus


@pytest.fixture
def relative_model_outputs(tiny_model_dir, tmp_path, monkeypatch):
    """In tmp_path/work: models/tiny (a copy), an encode with --model models/tiny, an index of it."""
    work = tmp_path / "work"
    shutil.copytree(tiny_model_dir, work / "models" / "tiny")
    write_corpus(work / "c.parquet")
    monkeypatch.chdir(work)
    for args in (["encode", "c.parquet", "--model", "models/tiny", "--runner", "local", "--out", "v"],
                 ["index", "v", "--out", "idx", "--factory", "Flat"]):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    manifest = json.loads((work / "v" / "manifest.json").read_text())
    assert manifest["encoder"]["model"] == "models/tiny"                       # the name the user gave
    assert manifest["model"]["path"] == str((work / "models" / "tiny").resolve())  # where it resolved
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return work


def test_search_and_evaluate_from_another_directory(relative_model_outputs):
    work = relative_model_outputs
    result = run_cli("search", work / "idx", TEXTS[0], "-k", "1")
    assert result.exit_code == 0, result.output
    assert result.output.split()[1] == "0"                                      # rank 1 is row 0's own text
    hits = search_texts(open_index(work / "idx"), [TEXTS[1]], k=1)
    assert hits[0][0].id == 1
    pq.write_table(pa.table({"id": ["q"], "text": [TEXTS[2]]}), "q.parquet")
    pq.write_table(pa.table({"query_id": ["q"], "doc_id": ["2"], "relevance": [1]}), "qrels.parquet")
    report = evaluate(work / "idx", "q.parquet", "qrels.parquet", [1, 10])
    assert report["index"]["ndcg_at_1"] == 1.0
    result = run_cli("evaluate", work / "idx", "--queries", "q.parquet", "--qrels", "qrels.parquet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["index"]["ndcg_at_10"] == 1.0   # as the library found


def test_a_name_that_now_points_at_another_model_is_not_used(relative_model_outputs, tiny_model_dir):
    """From here `models/tiny` names a different model: the recorded directory is used, not it."""
    other = Path("models/tiny")
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("}", ', "note": "other"}', 1))
    result = run_cli("search", relative_model_outputs / "idx", TEXTS[0], "-k", "1")
    assert result.exit_code == 0, result.output       # the other model's content hash would be refused
    assert result.output.split()[1] == "0"            # and the recorded model still finds row 0's own text


def test_a_model_that_changed_in_place_is_still_refused(relative_model_outputs):
    config = relative_model_outputs / "models" / "tiny" / "config.json"
    config.write_text(config.read_text().replace("}", ', "note": "changed"}', 1))
    result = run_cli("search", relative_model_outputs / "idx", TEXTS[0])
    assert result.exit_code == 1 and "has changed since these vectors were made" in result.output
    with pytest.raises(EmbedpipeError, match="has changed"):
        search_texts(open_index(relative_model_outputs / "idx"), [TEXTS[0]], k=1)
