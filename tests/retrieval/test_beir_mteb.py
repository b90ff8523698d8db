"""BEIR as BEIR ships it: a dataset folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) scores the
same nDCG@10 as the same data in parquet; evaluate writes MTEB's result JSON (validated by mteb's own
TaskResult) and TREC run files; bad BEIR files are one line naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytrec_eval

from tests.helpers import WORDS, assert_one_line_error, run_cli

DOCS = 40


def doc_text(i: int) -> tuple[str, str]:
    """(title, text) from the tiny model's vocabulary, distinct per document."""
    words = WORDS[20:]
    return words[i % len(words)], " ".join(words[(i * 7 + j) % len(words)] for j in range(4 + i % 3))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def beir(tiny_model_dir, tmp_path_factory):
    """A BEIR folder and the same data as parquet, each encoded and indexed (Flat)."""
    root = tmp_path_factory.mktemp("beir")
    folder = root / "tinybeir"
    (folder / "qrels").mkdir(parents=True)
    docs = [(f"d{i}", *doc_text(i)) for i in range(DOCS)]
    write_jsonl(folder / "corpus.jsonl", [{"_id": d, "title": t, "text": x} for d, t, x in docs])
    queries = [(f"q{i}", doc_text(3 * i)[1].split()[0] + " " + doc_text(3 * i + 1)[1]) for i in range(8)]
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": t, "metadata": {}} for q, t in queries])
    judged = [(q, f"d{3 * i + j}", 1 + j % 2) for i, (q, _) in enumerate(queries) for j in range(2)]
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in judged))
    pq.write_table(pa.table({"id": [d for d, _, _ in docs], "text": [(t + " " + x).strip() for _, t, x in docs]}),
                   root / "corpus.parquet")
    pq.write_table(pa.table({"qid": [q for q, _ in queries], "query": [t for _, t in queries]}), root / "q.parquet")
    pq.write_table(pa.table({"q": [q for q, _, _ in judged], "d": [d for _, d, _ in judged],
                             "grade": [g for _, _, g in judged]}), root / "qrels.parquet")
    for name, corpus in (("beir", folder), ("parquet", root / "corpus.parquet")):
        result = run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--threads", "1",
                         "--out", root / f"{name}.vectors")
        assert result.exit_code == 0, result.output
        assert run_cli("index", root / f"{name}.vectors", "--out", root / f"{name}.index").exit_code == 0
    return root, folder


def evaluate_json(*args) -> dict:
    result = run_cli("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_beir_folder_scores_like_the_same_data_in_parquet(beir):
    root, folder = beir
    from_beir = evaluate_json(root / "beir.index", "--beir", folder, "--split", "test")
    from_parquet = evaluate_json(root / "parquet.index", "--queries", root / "q.parquet", "--qrels",
                                 root / "qrels.parquet", "--queries-columns", "qid,query",
                                 "--qrels-columns", "q,d,grade")
    assert from_beir["queries"] == from_parquet["queries"] == 8
    assert from_beir["index"] == from_parquet["index"]
    assert 0 < from_beir["index"]["ndcg_at_10"] <= 1


def test_mteb_format_loads_as_an_mteb_task_result(beir, tmp_path):
    root, folder = beir
    out = tmp_path / "TinyBEIR.json"
    result = run_cli("evaluate", root / "beir.index", "--beir", folder, "--format", "mteb", "--out", out,
                     "--task-name", "TinyBEIR")
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    report = evaluate_json(root / "beir.index", "--beir", folder)
    entry = written["scores"]["test"][0]
    assert entry["main_score"] == report["index"]["ndcg_at_10"] and entry["hf_subset"] == "default"
    assert {k: entry[k] for k in report["index"]} == report["index"]
    import mteb  # the dev extra declares it: a missing mteb fails here instead of skipping
    loaded = mteb.TaskResult.from_disk(out)
    assert loaded.task_name == "TinyBEIR" and loaded.get_score() == pytest.approx(report["index"]["ndcg_at_10"])
    assert loaded.scores["test"][0]["mrr_at_10"] == pytest.approx(report["index"]["mrr_at_10"])


def test_trec_run_file_scores_the_same_with_pytrec_eval(beir, tmp_path):
    root, folder = beir
    out = tmp_path / "run.trec"
    assert run_cli("evaluate", root / "beir.index", "--beir", folder, "--format", "trec", "--out", out).exit_code == 0
    run: dict[str, dict[str, float]] = {}
    for line in out.read_text().splitlines():
        query_id, q0, doc_id, rank, score, tag = line.split()
        assert q0 == "Q0" and tag == "beir.index" and int(rank) == len(run.setdefault(query_id, {})) + 1
        run[query_id][doc_id] = float(score)
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    ndcg = sum(m["ndcg_cut_10"] for m in per_query.values()) / len(per_query)
    assert ndcg == pytest.approx(evaluate_json(root / "beir.index", "--beir", folder)["index"]["ndcg_at_10"], abs=1e-5)


def bad_copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_a_beir_folder_without_qrels_for_the_split(beir, tmp_path):
    root, folder = beir
    result = run_cli("evaluate", root / "beir.index", "--beir", folder, "--split", "dev")
    assert_one_line_error(result, f"BEIR folder {folder} has no qrels for --split dev",
                          f"{folder / 'qrels' / 'dev.tsv'} does not exist", "splits here: test")


@pytest.mark.parametrize("qrels, fragment", [
    ("query-id\tcorpus-id\tscore\nq0\td0\t1\nq0\td1\n", "test.tsv line 3: 2 tab-separated field(s), the header has 3"),
    ("query-id\tcorpus-id\tscore\nq0\td0\t1\nq0\td1\thigh\n", "test.tsv line 3: score 'high' is not a whole number"),
    ("q\td\ts\nq0\td0\t1\n", "test.tsv line 1: no column 'query-id' in the header (q, d, s)"),
], ids=["short line", "grade not a number", "no header"])
def test_bad_qrels_lines_are_named(beir, tmp_path, qrels, fragment):
    root, folder = beir
    copy = bad_copy(folder, tmp_path)
    (copy / "qrels" / "test.tsv").write_text(qrels)
    assert_one_line_error(run_cli("evaluate", root / "beir.index", "--beir", copy), fragment)


def test_a_queries_line_that_is_not_json(beir, tmp_path):
    root, folder = beir
    copy = bad_copy(folder, tmp_path)
    with open(copy / "queries.jsonl", "a") as f:
        f.write("{'_id': 'q9', 'text': 'single quotes'}\n")
    assert_one_line_error(run_cli("evaluate", root / "beir.index", "--beir", copy), "queries.jsonl line 9: not JSON")


def test_beir_and_queries_are_exclusive(beir):
    root, folder = beir
    result = run_cli("evaluate", root / "beir.index", "--beir", folder, "--queries", folder / "queries.jsonl")
    assert result.exit_code == 2 and "give either --beir DIR or --queries and --qrels" in result.output
