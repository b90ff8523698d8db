"""`embedpipe run SPEC`: stages run in order with the tiny random BERT (real onnxruntime, FAISS,
parquet), a rerun skips what is complete, a changed config reruns only what depends on it, and a
failed stage leaves the finished ones for the rerun to continue from."""

from __future__ import annotations

import json
import shutil
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embedpipe.cli import main
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import open_index
from tests.helpers import WORDS, write_corpus

N_DOCS = 60


def phrases(n: int, offset: int = 0) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3 + offset) % len(WORDS)] for j in range(5)) + f" {i}" for i in range(n)]


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    """A spec over a 60-row corpus, 6 queries that are documents' own texts, and their qrels."""
    texts = phrases(N_DOCS)
    write_corpus(tmp_path / "corpus.parquet", texts, ids=[f"d{i}" for i in range(N_DOCS)])
    picked = [3, 11, 20, 31, 42, 59]
    pq.write_table(pa.table({"id": [f"q{i}" for i in picked], "text": [texts[i] for i in picked]}),
                   tmp_path / "queries.parquet")
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in picked], "doc_id": [f"d{i}" for i in picked],
                             "relevance": [1] * len(picked)}), tmp_path / "qrels.parquet")
    (tmp_path / "spec.yaml").write_text(textwrap.dedent(f"""
        output_dir: out
        ray:
          cpus_per_actor: 1
        encode:
          corpus: corpus.parquet
          model: {tiny_model_dir}
          runner: local
          rows_per_shard: 40
        index:
          factory: Flat
        evaluate:
          queries: queries.parquet
          qrels: qrels.parquet
          k_values: [1, 10]
    """))
    return tmp_path


def run(project, *args):
    result = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), *args])
    summary = json.loads(result.output.strip().splitlines()[-1]) if result.exit_code == 0 else None
    return result, summary


def test_run_then_rerun_skips_every_stage(project):
    result, summary = run(project)
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "ran", "index": "ran", "evaluate": "ran"}
    out = project / "out"
    assert open_vectors(out / "vectors").rows == N_DOCS
    assert open_index(out / "index").index.ntotal == N_DOCS
    report = json.loads((out / "evaluation.json").read_text())
    assert report["index"]["recall_at_1"] == 1.0      # each query is its document's own text

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result, summary = run(project)
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "skipped", "index": "skipped", "evaluate": "skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    plan = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), "--dry-run"])
    assert [line.split()[1:3] for line in plan.output.splitlines()[2:]] == [
        ["encode", "up"], ["index", "up"], ["evaluate", "up"]]


def test_a_changed_config_reruns_only_what_depends_on_it(project):
    assert run(project)[0].exit_code == 0
    vectors_manifest = (project / "out" / "vectors" / "manifest.json").read_text()
    where = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), "--dry-run", "--set", "index.runner=ray",
                                      "--set", "index.ray_address=127.0.0.1:6379"])
    assert "index     up" in where.output  # where an index is built is not what is built: nothing to redo
    info_path = next((project / "out").rglob("index.json"))
    info = json.loads(info_path.read_text())
    del info["config"]["inverted_lists"]       # as recorded before the field existed: its default then
    info_path.write_text(json.dumps(info))
    older = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), "--dry-run"])
    assert "index     up" in older.output, older.output
    plan = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), "--dry-run", "--set", "index.metric=l2"])
    assert "index     run         index config changed (metric 'ip' -> 'l2'): rebuilds" in plan.output
    assert "evaluate  run         after index" in plan.output
    result, summary = run(project, "--set", "index.metric=l2")
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "skipped", "index": "ran", "evaluate": "ran"}
    assert open_index(project / "out" / "index").info["metric"] == "l2"
    assert (project / "out" / "vectors" / "manifest.json").read_text() == vectors_manifest


def test_a_failed_stage_keeps_the_finished_ones_and_a_rerun_continues(project):
    good = pq.read_table(project / "qrels.parquet")
    pq.write_table(pa.table({"query_id": ["q3"], "doc_id": ["no-such-doc"], "relevance": [1]}),
                   project / "qrels.parquet")
    result, _ = run(project)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(
        "Error: stage evaluate failed: 1 doc id(s) in ")
    assert "Traceback" not in result.output
    assert open_index(project / "out" / "index").index.ntotal == N_DOCS    # published before the failure
    assert not (project / "out" / "evaluation.json").exists()

    pq.write_table(good, project / "qrels.parquet")
    result, summary = run(project)
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "skipped", "index": "skipped", "evaluate": "ran"}


def test_a_changed_encoder_config_is_refused_without_overwrite(project):
    assert run(project)[0].exit_code == 0
    result, _ = run(project, "--set", "encode.pooling=cls")
    assert result.exit_code == 1
    assert "Error: stage encode failed:" in result.output and "pass encode.overwrite: true" in result.output
    assert open_vectors(project / "out" / "vectors").manifest["pooling"] == "mean"   # untouched
    result, summary = run(project, "--set", "encode.pooling=cls", "--set", "encode.overwrite=true")
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "ran", "index": "ran", "evaluate": "ran"}
    assert open_vectors(project / "out" / "vectors").manifest["pooling"] == "cls"


def test_the_encoder_identity_decides_whether_the_vectors_are_current(project, tiny_model_dir):
    """The encode stage compares the run key that encoding records: no max_length means the model's
    default (64 for the tiny model), which the manifest holds; another max_length or a model whose
    files changed is a change."""
    model = project / "model"
    shutil.copytree(tiny_model_dir, model)
    assert run(project, "--set", f"encode.model={model}")[0].exit_code == 0

    def encode_plan(*sets: str) -> str:
        result = CliRunner().invoke(main, ["run", str(project / "spec.yaml"), "--dry-run",
                                           "--set", f"encode.model={model}", *sets])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[2]

    assert "encode    up to date" in encode_plan()
    assert "encode    up to date" in encode_plan("--set", "encode.max_length=64")
    assert "config changed (max_length 64 -> 32)" in encode_plan("--set", "encode.max_length=32")
    (model / "notes.txt").write_text("one file more: other content, another content hash")
    assert "config changed (model_content_hash " in encode_plan()


def test_classify_stage_runs_and_is_skipped_when_its_report_is_current(project, tiny_model_dir):
    labels = [["animal", "thing", "place"][i % 3] for i in range(N_DOCS)]
    write_corpus(project / "labeled.parquet", phrases(N_DOCS, offset=5), ids=list(range(N_DOCS)), label=labels)
    with open(project / "spec.yaml", "a") as f:
        f.write(textwrap.dedent(f"""
            classify:
              train: labeled.parquet
              model: {tiny_model_dir}
              poolings: mean
              heads: [linear]
              seeds: 1
        """))
    result, summary = run(project)
    assert result.exit_code == 0, result.output
    assert summary["stages"]["classify"] == "ran"
    report = json.loads((project / "out" / "classify" / "report.json").read_text())
    assert report["config"]["poolings"] == ["mean"] and report["dataset"]["n_classes"] == 3
    assert (project / "out" / "classify" / "accuracy.png").exists()
    result, summary = run(project)
    assert summary["stages"] == {"encode": "skipped", "index": "skipped", "evaluate": "skipped", "classify": "skipped"}
    result, summary = run(project, "--set", "classify.poolings=[cls]")
    assert result.exit_code == 0, result.output
    assert summary["stages"] == {"encode": "skipped", "index": "skipped", "evaluate": "skipped", "classify": "ran"}
    assert json.loads((project / "out" / "classify" / "report.json").read_text())["config"]["poolings"] == ["cls"]


def test_a_second_run_on_the_same_output_dir_is_refused_while_one_runs(project):
    import fcntl

    (project / "out").mkdir()
    with open(project / "out" / ".embedpipe-run.lock", "a") as held:      # a run in progress holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result, _ = run(project)
    assert result.exit_code == 1
    assert "Error: another embedpipe run is working in" in result.output
    assert sorted(p.name for p in (project / "out").iterdir()) == [".embedpipe-run.lock"]   # nothing written
    assert run(project)[0].exit_code == 0                                # released: the run goes ahead
