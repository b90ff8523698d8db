"""`embedpipe classify` / `predict` end to end on a small labeled set made here, with the tiny
random BERT exported for real and run by onnxruntime (probes) and torch (fine-tuning)."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embedpipe.classify import ClassifyJob, report_is_current, run_classify
from embedpipe.classify.data import load_splits
from embedpipe.classify.features import FeatureCache
from embedpipe.classify.probes import mteb_samples
from embedpipe.cli import main
from embedpipe.encode.encoder import EncoderSpec
from tests.classify.helpers import labeled_rows, write
from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeled")
    return write(root / "train.parquet", labeled_rows(20, 0)), write(root / "test.parquet", labeled_rows(10, 1))


@pytest.fixture(scope="module")
def full_report(data, tiny_model_dir, tmp_path_factory):
    """Every pooling the tiny BERT has x both heads, plus a 1-epoch fine-tune of cls and mean."""
    out = tmp_path_factory.mktemp("reports") / "report"
    train, test = data
    result = CliRunner().invoke(main, ["classify", str(train), "--test", str(test), "--model", str(tiny_model_dir),
                                       "--pooling", "cls,mean,max,pooler", "--head", "linear,mlp,attention",
                                       "--layers", "all", "--finetune", "--finetune-heads", "pooler,linear",
                                       "--epochs", "1", "--lr", "1e-3", "--seeds", "2", "--finetune-train-limit", "30",
                                       "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_every_method_runs_and_the_three_report_files_agree(full_report):
    out, printed = full_report
    report = json.loads((out / "report.json").read_text())
    assert printed == report
    methods = {(r["method"], r["pooling"], r["layer"], r["head"]) for r in report["results"]}
    probes = {("probe", p, layer, h) for p in ("cls", "mean", "max") for h in ("linear", "mlp") for layer in (0, 1, 2)}
    assert methods == probes | {("probe", "pooler", 2, h) for h in ("linear", "mlp")} | {
        ("probe", "attention", 2, "attention")} | {("finetune", p, 2, h) for p in ("cls", "mean")
                                                   for h in ("pooler", "linear")}
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| probe")
             or line.startswith("| finetune")]
    assert len(table) == len(report["results"])
    for line, result in zip(table, report["results"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [result["method"], result["pooling"], str(result["layer"]), result["head"]]
        assert int(cells[4]) == result["train_rows"]
        assert float(cells[5]) == pytest.approx(result["accuracy"], abs=5e-5)
        assert float(cells[7]) == pytest.approx(result["macro_f1"], abs=5e-5)
        assert int(cells[8]) == result["runs"]
    for name in ("accuracy.png", "layers.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = pq.read_table(out / "predictions.parquet").to_pydict()
    labels = np.array(stored["label"])
    test_rows, encoding_seconds = report["dataset"]["test_rows"], report["encoding"]["test_seconds"]
    for result in report["results"]:
        # each run's accuracy is what its stored test predictions get right, the reported one their mean
        runs = [stored[result["key"] if seed == 0 else f"{result['key']}#{seed}"] for seed in range(result["runs"])]
        assert result["accuracies"] == pytest.approx([np.mean(np.array(run) == labels) for run in runs])
        assert result["accuracy"] == pytest.approx(np.mean(result["accuracies"]))
        assert result["train_seconds"] > 0, result      # the training was timed
        if result["method"] == "probe":   # a probe's prediction time includes encoding the test texts (rounded)
            assert test_rows / result["predict_texts_per_s"] >= encoding_seconds - 5e-4, result
    mlp = next(r for r in report["results"] if r["head"] == "mlp")
    assert mlp["runs"] == 2 and len(mlp["accuracies"]) == 2
    tuned = [r for r in report["results"] if r["method"] == "finetune"]
    assert all(len(r["history"]) == 1 and r["train_rows"] == 27 for r in tuned)   # 30 less 10% validation
    assert all(r["pooler_from_checkpoint"] is (r["head"] == "pooler") for r in tuned)
    assert report["dataset"]["n_classes"] == 3 and report["dataset"]["train_rows"] == 60
    assert report["dataset"]["test_rows"] == 30
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no staging left behind


def test_a_probe_on_well_separated_classes_is_accurate(full_report):
    _, report = full_report
    linear_mean = next(r for r in report["results"] if (r["pooling"], r["layer"], r["head"]) == ("mean", 2, "linear"))
    assert linear_mean["accuracy"] >= 0.9, linear_mean
    assert report["best"]["accuracy"] >= 0.9


def test_report_records_config_and_input_fingerprints(full_report, data, tiny_model_dir, tmp_path):
    out, report = full_report
    train, test = data
    assert report["config"]["poolings"] == ["cls", "mean", "max", "pooler"] and report["config"]["epochs"] == 1
    assert len(report["inputs"]["train"]["fingerprint"]) == 64 and report["inputs"]["test"]["path"] == str(test)
    job = ClassifyJob(**{k: tuple(v) if isinstance(v, list) else v for k, v in report["config"].items()})
    assert report_is_current(job)
    assert not report_is_current(ClassifyJob(**{**vars(job), "seeds": 5}))
    changed = tmp_path / "train.parquet"
    write(changed, labeled_rows(20, 7))
    assert not report_is_current(ClassifyJob(**{**vars(job), "train": str(changed)}))


def test_a_second_run_reuses_the_cached_vectors(data, tiny_model_dir):
    splits = load_splits(str(data[0]), test=str(data[1]), test_fraction=0.2, label_column="label",
                         text_column="text", train_limit=None, seed=0)
    spec = EncoderSpec(model=str(tiny_model_dir), pooling="max")
    first, _ = FeatureCache().vectors(spec, splits.train)
    again = FeatureCache()
    second, _ = again.vectors(spec, splits.train)
    assert not again._encoders                    # nothing was encoded: no encoder was even loaded
    np.testing.assert_array_equal(first, second)
    other = FeatureCache()
    other.vectors(EncoderSpec(model=str(tiny_model_dir), pooling="max", normalize=False), splits.train)
    assert other._encoders                        # another setting is another cache entry
    subset = load_splits(str(data[0]), test=str(data[1]), test_fraction=0.2, label_column="label",
                         text_column="text", train_limit=12, seed=0)
    sliced = FeatureCache()
    part, _ = sliced.vectors(spec, subset.train)  # rows of a fully cached file: sliced, not encoded
    assert not sliced._encoders
    np.testing.assert_array_equal(part, first[subset.train.rows])


def test_save_model_then_predict(data, tiny_model_dir, tmp_path):
    train, test = data
    result = run("classify", train, "--test", test, "--model", tiny_model_dir, "--pooling", "mean", "--head",
                 "linear", "--out", tmp_path / "r", "--save-model", tmp_path / "clf")
    assert result.exit_code == 0, result.output
    assert "| probe | mean | 2 | linear | 54 |" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    printed = result.output.rstrip().splitlines()
    assert printed[-len(report["verdict"]) - 1:] == ["Verdict:"] + [f"- {s}" for s in report["verdict"]]
    saved = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert saved["pooling"] == "mean" and saved["head"] == "linear" and sorted(saved["classes"]) == saved["classes"]
    assert (tmp_path / "clf" / "head.safetensors").exists()
    result = run("predict", tmp_path / "clf", test, "--out", tmp_path / "preds.parquet", "--json")
    assert result.exit_code == 0, result.output
    preds = pq.read_table(tmp_path / "preds.parquet").to_pydict()
    truth = pq.read_table(test).to_pydict()
    assert preds["id"] == truth["id"]
    accuracy = np.mean([p == t for p, t in zip(preds["label"], truth["label"])])
    assert accuracy == pytest.approx(report["results"][0]["accuracy"])
    assert all(1 / 3 <= s <= 1 for s in preds["score"])   # the most probable of 3 classes' probabilities
    again = run("predict", tmp_path / "clf", test, "--out", tmp_path / "preds.parquet")
    assert_one_line_error(again, "already exists")


def test_held_out_split_and_train_limit_keep_every_class(data):
    splits = load_splits(str(data[0]), test=None, test_fraction=0.25, label_column="label", text_column="text",
                         train_limit=None, seed=0)
    assert len(splits.test.rows) == 15 and len(splits.train.rows) == 45
    assert not set(splits.test.rows) & set(splits.train.rows)
    assert np.bincount(splits.test.y).tolist() == [5, 5, 5]
    limited = load_splits(str(data[0]), test=str(data[1]), test_fraction=0.2, label_column="label",
                          text_column="text", train_limit=9, seed=0)
    assert np.bincount(limited.train.y).tolist() == [3, 3, 3]


def test_mteb_sampling_takes_k_per_label_and_differs_between_experiments():
    y = np.repeat(np.arange(3), 10)
    picks = mteb_samples(y, 4, 3)
    for rows in picks:
        assert np.bincount(y[rows]).tolist() == [4, 4, 4]
    assert len({tuple(sorted(rows)) for rows in picks}) == 3
    assert [r.tolist() for r in mteb_samples(y, 4, 3)] == [r.tolist() for r in picks]   # reproducible


def test_mteb_mode_runs_one_experiment_per_seed(data, tiny_model_dir, tmp_path):
    report = run_classify(ClassifyJob(train=str(data[0]), test=str(data[1]), model=str(tiny_model_dir),
                                      poolings=("mean",), heads=("linear",), samples_per_label=4, seeds=3,
                                      out=str(tmp_path / "r")))
    result = report["results"][0]
    assert result["runs"] == 3 and result["train_rows"] == 12 and result["samples_per_label"] == 4


BAD_INPUTS = {
    "no label column": ({"id": [1, 2], "text": ["a cat", "a dog"]}, None, [], "no label column 'label'"),
    "null labels": ({"id": [1, 2, 3], "text": ["a", "b", "c"], "label": ["x", None, "y"]}, None, [],
                    "null label"),
    "single class": ({"id": [1, 2], "text": ["a cat", "a dog"], "label": ["x", "x"]}, None, [],
                     "at least two classes"),
    "unseen test labels": ({"id": [1, 2], "text": ["a cat", "a dog"], "label": ["x", "y"]},
                           {"id": [3], "text": ["a bird"], "label": ["z"]}, [], "never occur in training"),
    "fewer rows than classes": ({"id": [1, 2, 3], "text": ["a", "b", "c"], "label": ["x", "y", "z"]},
                                {"id": [3], "text": ["a bird"], "label": ["z"]}, ["--train-limit", "2"],
                                "fewer rows than the 3 classes"),
    "one row of a class, no test file": ({"id": [1, 2, 3], "text": ["a", "b", "c"], "label": ["x", "x", "y"]},
                                         None, [], "single row"),
    "blank text": ({"id": [1, 2], "text": ["a cat", " "], "label": ["x", "y"]}, None, [], "null or blank text"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_keeps_the_old_report(case, tiny_model_dir, tmp_path):
    train_cols, test_cols, extra, message = BAD_INPUTS[case]
    train = write(tmp_path / "train.parquet", train_cols)
    args = ["classify", train, "--model", tiny_model_dir, "--out", tmp_path / "report", "--overwrite", *extra]
    if test_cols is not None:
        args += ["--test", write(tmp_path / "test.parquet", test_cols)]
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text('{"old": true}')
    assert_one_line_error(run(*args), message)
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report", "train.parquet"] + (["test.parquet"] if test_cols is not None else []))


def test_other_usage_errors(data, tiny_model_dir, tmp_path):
    train, _ = data
    assert_one_line_error(run("classify", tmp_path / "nope.parquet"), "does not exist")
    assert_one_line_error(run("classify", train, "--label-column", "kind", "--out", tmp_path / "r"),
                          "no label column 'kind'", "columns: id, text, label")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "report.json").write_text("{}")
    assert_one_line_error(run("classify", train, "--out", tmp_path / "taken"), "--overwrite")
    assert_one_line_error(run("predict", tmp_path / "taken", train, "--out", tmp_path / "p.parquet"),
                          "not a saved embedpipe classifier")
    bad = run("classify", train, "--pooling", "cls,median")
    assert bad.exit_code == 2 and "median" in bad.output and re.search(r"mean, max", bad.output)


def test_report_statistics_and_verdict_agree_with_the_predictions(full_report):
    """Recompute every result's accuracy, CI and p from predictions.parquet; report.md shows the same."""
    from embedpipe.classify.stats import compare

    out, report = full_report
    table = pq.read_table(out / "predictions.parquet").to_pydict()
    y = np.array(table["label"])
    best = report["best"]
    assert best["accuracy"] == max(r["accuracy"] for r in report["results"])

    def correctness(key, runs):
        right = np.stack([np.array(table[key if s == 0 else f"{key}#{s}"]) == y for s in range(runs)]).astype(float)
        return right.mean(0), right[0]

    by_key = {r["key"]: r for r in report["results"]}
    for r in report["results"]:
        mean, first = correctness(r["key"], r["runs"])
        assert r["accuracy"] == pytest.approx(mean.mean())
        if r["key"] == best["key"]:
            assert r["vs_best"] is None
            continue
        best_mean, best_first = correctness(best["key"], by_key[best["key"]]["runs"])
        assert r["vs_best"] == pytest.approx(compare(best_mean, mean, first_a=best_first, first_b=first))
        assert r["vs_best"]["ci_low"] <= r["vs_best"]["difference"] <= r["vs_best"]["ci_high"]
    kinds = {c["kind"] for c in report["comparisons"]}
    assert {"pooling", "layer", "attention", "finetune", "finetune_heads"} <= kinds
    md = (out / "report.md").read_text()
    assert md.index("## Verdict") < md.index("| method |")
    assert [line[2:] for line in md.split("## Verdict\n\n")[1].split("\n\n")[0].splitlines()] == report["verdict"]
    assert report["verdict"][0].startswith("Best: ") and f"{100 * best['accuracy']:.1f}%" in report["verdict"][0]
    for c in report["comparisons"]:
        assert any(f"{100 * abs(c['difference']):.1f} points" in sentence for sentence in report["verdict"])
    for line in md.splitlines():
        if line.startswith("| probe") or line.startswith("| finetune"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            r = next(r for r in report["results"] if [r["method"], r["pooling"], str(r["layer"]), r["head"]]
                     == cells[:4])
            if r["vs_best"]:
                assert float(cells[9]) == pytest.approx(-100 * r["vs_best"]["difference"], abs=0.051)


def test_attention_head_refuses_too_many_token_states_in_one_line(data, tiny_model_dir, tmp_path):
    train, test = data
    result = run("classify", train, "--test", test, "--model", tiny_model_dir, "--head", "attention",
                 "--token-states-limit-mb", "0.001", "--out", tmp_path / "r")
    assert_one_line_error(result, "token states", "--token-states-limit-mb")
    assert not (tmp_path / "r").exists()


def test_the_report_marks_the_models_own_pooling(data, tiny_st_model, tmp_path):
    """A sentence-transformers model trained with cls pooling: its cls rows are marked, in report.json
    and in report.md, which says so in words; a plain model's report marks none (the other tests)."""
    out = tmp_path / "r"
    report = run_classify(ClassifyJob(train=str(data[0]), test=str(data[1]), model=str(tiny_st_model("bert")),
                                      poolings=("cls", "mean"), heads=("linear",), out=str(out)))
    assert report["model"]["own_pooling"] == "cls"
    assert {r["pooling"]: r["own_pooling"] for r in report["results"]} == {"cls": True, "mean": False}
    markdown = (out / "report.md").read_text()
    assert "This model was trained with cls pooling" in markdown
    assert "| cls *(model's own)* |" in markdown and "| mean |" in markdown
