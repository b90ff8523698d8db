"""Round 3, class 9: outputs never break their own format. Every field written into a
whitespace-separated TREC run (query id, document id, score, tag) is checked; a tag taken from an
index directory's name with a space (or a tab, a line break) is made one field."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.reports import trec_run_lines, trec_tag
from tests.helpers import TEXTS, run_cli, write_corpus


@pytest.mark.parametrize("run, tag, what", [
    ({"q1": {"d1": 1.0}}, "my run", "tag"),
    ({"q1": {"d1": 1.0}}, "a\tb", "tag"),
    ({"q1": {"d1": 1.0}}, "", "tag"),
    ({"q1": {"d1": 1.0}}, "line\nbreak", "tag"),
    ({"q1": {"d1": 1.0}}, "para\u2029sep", "tag"),
    ({"q1": {"d1": 1.0}}, "nbsp\u00a0here", "tag"),
    ({"q 1": {"d1": 1.0}}, "t", "query id"),
    ({"": {"d1": 1.0}}, "t", "query id"),
    ({"q1": {"d\t1": 1.0}}, "t", "document id"),
    ({"q1": {"d\x00": 1.0}}, "t", "document id"),
    ({"q1": {"d1": float("nan")}}, "t", "score"),
    ({"q1": {"d1": float("inf")}}, "t", "score"),
])
def test_every_trec_field_is_checked(run, tag, what):
    with pytest.raises(BadInput, match=what):
        trec_run_lines(run, tag)


@pytest.mark.parametrize("name, tag", [("my index", "my_index"), ("a\tb\nc", "a_b_c"), ("  ", "embedpipe"),
                                       ("idx", "idx"), ("x\u00a0y", "x_y")])
def test_a_tag_from_a_directory_name_is_one_field(name, tag):
    assert trec_tag(name) == tag
    assert all(len(line.split()) == 6 for line in trec_run_lines({"q": {"d": 0.5}}, trec_tag(name)))


def test_evaluate_writes_six_fields_from_an_index_dir_with_spaces(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    assert run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local",
                   "--out", tmp_path / "v").exit_code == 0
    index = tmp_path / "my index v2"
    assert run_cli("index", tmp_path / "v", "--out", index, "--factory", "Flat").exit_code == 0
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": ["a cat", "the river"]}), tmp_path / "q.parquet")
    pq.write_table(pa.table({"query_id": ["q1", "q2"], "doc_id": ["d0", "d3"], "relevance": [1, 1]}),
                   tmp_path / "r.parquet")
    result = run_cli("evaluate", index, "--queries", tmp_path / "q.parquet", "--qrels", tmp_path / "r.parquet",
                     "--format", "trec", "--out", tmp_path / "run.trec")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines and all(len(line.split(" ")) == 6 and line.endswith(" my_index_v2") for line in lines)
