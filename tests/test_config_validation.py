"""Configs check themselves when built: every bad value raises ConfigError naming its field, from Python,
and the CLI shows the field as the command's flag in one `Error:` line (exit code 1) before anything is
written. Hypothesis states the integer and interval rules as properties over any value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpipe.classify import ClassifyJob
from embedpipe.classify.finetune import FinetuneOptions
from embedpipe.classify.probes import MlpOptions
from embedpipe.encode import EncodeJob
from embedpipe.encode.batching import BatchPlan
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.encode.rows import WorkerConfig
from embedpipe.errors import ConfigError
from embedpipe.index import IndexConfig
from embedpipe.pipeline.schema import RaySection
from embedpipe.pipeline.submit import SubmitJob
from embedpipe.retrieval.evaluate import EvaluateJob
from tests.helpers import assert_one_line_error, names_under, run_cli, snapshot, write_corpus

NAN, INF = float("nan"), float("inf")

# (config class, the smallest valid arguments, {field: [bad values]})
TABLES = [
    (EncoderSpec, {}, {
        "model": ["", "   ", 3, "a\0b"],
        "pooling": ["median", "", 3, None, "CLS"],
        "normalize": ["yes", 1, None],
        "max_length": [1, 0, -1, True, 2.5, "8", NAN],
        "optimize": ["O4", True, ["O1"], ""],
        "quantize": ["int4", True, ""],
    }),
    (BatchPlan, {}, {
        "batch_size": [0, -5, True, 1.5, "8", None],
        "token_budget": [0, -1, False, 1e4],
        "threads": [0, -1, True, 1.0],
        "max_padding": [NAN, INF, -INF, -0.1, 1.5, True, "0.1", None],
    }),
    (WorkerConfig, {"export_dir": "export", "pooling": "mean", "normalize": True, "max_length": 64,
                    "plan": BatchPlan(), "text_column": "text", "id_column": "id"}, {
        "export_dir": ["", None, 3],
        "pooling": ["median", None],
        "normalize": [1, "true"],
        "max_length": [1, None, True, 64.0],
        "plan": [{}, None, 128],
        "text_column": ["", None, "id"],
        "id_column": ["", 0],
        "empty_text": ["drop", None, True],
    }),
    (EncodeJob, {"corpus": "corpus.parquet"}, {
        "corpus": ["", None, 3],
        "out": ["", 3],
        "spec": [{}, "mean", None],
        "text_column": ["", None, "id"],
        "id_column": [""],
        "runner": ["spark", None, ""],
        "ray_address": ["", 6379],
        "workers": [0, -1, True, 2.0],
        "threads": [0, -2, True],
        "batch_size": [0, -5, True, "128"],
        "window": [0, False],
        "empty_text": ["drop", True],
        "dtype": ["int4", "float64", None],
        "rows_per_shard": [0, -1, True, 1.5, NAN, None],
        "overwrite": ["yes", 1, None],
        "ray_dashboard": [None, "no"],
    }),
    (IndexConfig, {}, {
        "factory": ["", 3, None],
        "metric": ["cosine", "IP", None],
        "max_memory": [0, -1, True, "lots", "0GB", "4XB", NAN, INF, None, "-4GB"],
        "target_recall": [0, 2, NAN, INF, True, -0.5, "0.9", None],
        "recall_margin": [-0.01, 0.5, NAN, INF, True, "0.01", None],
        "ef_construction": [0, -1, True, 80.0, "80"],
        "tuning_queries": [0, True, 10.0],
        "tuning_vectors": ["", 3],
        "add_batch_rows": [0, -1],
        "seed": [-1, True, 1.5],
    }),
    (EvaluateJob, {"index": "corpus.index", "queries": "queries.parquet", "qrels": "qrels.parquet"}, {
        "index": ["", None],
        "queries": [None, 3],
        "qrels": [""],
        "k_values": [[], [0], [True], "10", [10, -1], [1.5], 10, None],
        "exact": ["yes", None],
        "out": ["", None],
    }),
    (ClassifyJob, {"train": "train.parquet"}, {
        "train": ["", None],
        "test": ["", 3],
        "test_fraction": [0, 1, 1.5, -0.1, NAN, INF, True, "0.2"],
        "label_column": ["", None, "text"],
        "text_column": [""],
        "poolings": ["cls", [], ["median"], [3], None],
        "heads": ["linear", ["svm"], [None]],
        "finetune": ["yes", 1],
        "epochs": [0, -1, True],
        "learning_rate": [0, -1e-5, 2, NAN, INF, True],
        "finetune_batch_size": [0, -5],
        "finetune_seeds": [0],
        "finetune_train_limit": [0, True],
        "train_limit": [0, -1, 2.5],
        "seeds": [0, True, "3"],
        "samples_per_label": [0],
        "mlp_epochs": [0],
        "model": [""],
        "max_length": [1, 0],
        "normalize": [None],
        "split_seed": [-1, None],
        "threads": [0],
        "out": [""],
        "save_model": ["", 3],
        "overwrite": [1],
    }),
    (MlpOptions, {}, {
        "epochs": [0, True],
        "batch_size": [0, -1],
        "lr": [0, NAN, 2],
        "weight_decay": [-0.1, INF],
        "dropout": [1, -0.5, None],
    }),
    (FinetuneOptions, {}, {
        "epochs": [0, 1.5],
        "batch_size": [0],
        "lr": [0, -1e-5, INF],
        "weight_decay": [NAN],
        "warmup_fraction": [1.5, -0.1],
        "dropout": [1.0],
        "threads": [0, True],
    }),
    (RaySection, {}, {
        "address": ["", 6379],
        "workers": [0, -1, True],
        "cpus_per_actor": [0, 1.5],
    }),
    (SubmitJob, {"spec": "pipelines/demo.yaml", "address": "http://127.0.0.1:8265"}, {
        "spec": ["", None],
        "address": ["", None, 8265],
        "working_dir": ["", None],
        "output_dir": ["", 3],
        "overrides": ["encode.pooling=cls", [3], None],
        "env": [["A=1"], {"A": 1}, {"": "x"}, None],
        "submission_id": ["", 3],
        "wait": ["yes", None],
    }),
]

CASES = [pytest.param(cls, base, field, value, id=f"{cls.__name__}.{field}={value!r}")
         for cls, base, table in TABLES for field, values in table.items() for value in values]


@pytest.mark.parametrize("cls, base", [pytest.param(cls, base, id=cls.__name__) for cls, base, _ in TABLES])
def test_the_base_of_each_table_is_valid(cls, base):
    """So every refusal below is the bad field's doing."""
    cls(**base)


@pytest.mark.parametrize("cls, base, field, value", CASES)
def test_a_bad_value_is_refused_at_construction_naming_its_field(cls, base, field, value):
    with pytest.raises(ConfigError) as refused:
        cls(**{**base, field: value})
    assert refused.value.field == field and refused.value.fields == (field,)
    assert str(refused.value).startswith(f"{field} ")


@pytest.mark.parametrize("cls, base, field", [
    pytest.param(ClassifyJob, {"train": "t.parquet", "heads": [], "finetune": False}, "heads", id="nothing to do"),
    pytest.param(ClassifyJob, {"train": "t.parquet", "poolings": ["max"], "finetune": True}, "poolings",
                 id="finetune without cls or mean"),
    pytest.param(EncodeJob, {"corpus": "c.parquet", "text_column": "body", "id_column": "body"}, "text_column",
                 id="one column for ids and texts"),
])
def test_fields_that_contradict_each_other_are_refused(cls, base, field):
    with pytest.raises(ConfigError) as refused:
        cls(**base)
    assert refused.value.field == field


ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=5), st.lists(st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(ANY_VALUE)
def test_a_count_is_an_integer_of_at_least_one_and_nothing_else(value):
    acceptable = type(value) is int and value >= 1
    try:
        EncodeJob("corpus.parquet", rows_per_shard=value)
    except ConfigError as e:
        assert not acceptable and e.field == "rows_per_shard"
    else:
        assert acceptable


@settings(max_examples=200, deadline=None)
@given(ANY_VALUE)
def test_a_fraction_is_a_finite_number_inside_its_open_interval(value):
    acceptable = (type(value) in (int, float) and math.isfinite(value) and 0 < value < 1)
    try:
        ClassifyJob(train="train.parquet", test_fraction=value)
    except ConfigError as e:
        assert not acceptable and e.field == "test_fraction"
    else:
        assert acceptable


# --- the CLI: the field shown as the flag, one line, exit code 1, nothing written ---------------------------

CLI_CASES = [
    ("encode", "--rows-per-shard", ["--rows-per-shard", "0"]),
    ("encode", "--batch-size", ["--batch-size", "-5"]),
    ("encode", "--threads", ["--threads", "0"]),
    ("encode", "--workers", ["--workers", "0"]),
    ("encode", "--max-length", ["--max-length", "1"]),
    ("encode", "--text-column", ["--text-column", "id"]),
    ("encode", "--text-column", ["--text-column", " "]),
    ("index", "--target-recall", ["--target-recall", "2"]),
    ("index", "--target-recall", ["--target-recall", "nan"]),
    ("index", "--target-recall", ["--target-recall", "0"]),
    ("index", "--recall-margin", ["--recall-margin", "-0.01"]),
    ("index", "--recall-margin", ["--recall-margin", "0.5"]),
    ("index", "--ef-construction", ["--ef-construction", "0"]),
    ("index", "--max-memory", ["--max-memory", "0"]),
    ("index", "--max-memory", ["--max-memory", "lots"]),
    ("index", "--factory", ["--factory", " "]),
    ("classify", "--test-fraction", ["--test-fraction", "1.5"]),
    ("classify", "--test-fraction", ["--test-fraction", "inf"]),
    ("classify", "--seeds", ["--seeds", "0"]),
    ("classify", "--epochs", ["--epochs", "0"]),
    ("classify", "--lr", ["--lr", "0"]),
    ("classify", "--batch-size", ["--batch-size", "0"]),
    ("classify", "--train-limit", ["--train-limit", "0"]),
    ("classify", "--finetune-train-limit", ["--finetune-train-limit", "-3"]),
    ("classify", "--finetune-seeds", ["--finetune-seeds", "0"]),
    ("classify", "--samples-per-label", ["--samples-per-label", "0"]),
    ("classify", "--max-length", ["--max-length", "1"]),
    ("classify", "--threads", ["--threads", "0"]),
    ("classify", "--label-column", ["--label-column", "text"]),
    ("predict", "--threads", ["--threads", "0"]),
    ("predict", "--text-column", ["--text-column", ""]),
]


def _argv(command: str, tmp_path) -> list:
    """The command with real inputs and an output that does not exist yet."""
    if command == "encode":
        return ["encode", write_corpus(tmp_path / "corpus.parquet"), "--runner", "local", "--out", tmp_path / "out"]
    if command == "index":
        return ["index", tmp_path / "vectors", "--out", tmp_path / "out"]
    if command == "classify":
        return ["classify", write_corpus(tmp_path / "train.parquet", label=[0, 1] * 5), "--out", tmp_path / "out"]
    return ["predict", tmp_path / "clf", write_corpus(tmp_path / "new.parquet"), "--out", tmp_path / "out.parquet"]


@pytest.mark.parametrize("command, flag, args", [pytest.param(*case, id=" ".join([case[0], *case[2]]))
                                                 for case in CLI_CASES])
def test_a_bad_option_is_one_line_naming_the_flag_before_anything_is_written(command, flag, args, tmp_path,
                                                                            export_cache):
    argv = _argv(command, tmp_path)
    before = snapshot(tmp_path), names_under(export_cache)
    line = assert_one_line_error(run_cli(*argv, *args), f"Error: {flag} ")
    field = flag.removeprefix("--").replace("-", "_")
    assert f" {field} " not in f" {line} ", "the field should be shown as its flag"
    assert (snapshot(tmp_path), names_under(export_cache)) == before
