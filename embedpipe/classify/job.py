"""ClassifyJob + run_classify: probes on frozen pooled vectors against full fine-tuning, as a report.

    >>> report = run_classify(ClassifyJob(train="train.parquet", test="test.parquet",  # doctest: +SKIP
    ...                                   out="report_dir",
    ...                                   poolings=("cls", "mean"), heads=("linear", "mlp")))  # doctest: +SKIP
    >>> [(r["method"], r["pooling"], r["head"], round(r["accuracy"], 3)) for r in report["results"]]  # doctest: +SKIP

The report directory (report.json, report.md, accuracy.png) is written in a staging directory and
renamed into place, so an earlier report survives a failed run. report.json records the job's
config and the content fingerprints of the input files (see ``report_is_current``).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__, checks
from ..encode.encoder import EncoderSpec, model_path_of, prepare, spec_to_record
from ..encode.layers import resolve_layers
from ..encode.pooling import NEEDS_POOLER_WEIGHTS, check_pooling
from ..errors import ConfigError, EmbedpipeError
from ..formats.classifier import META, save_classifier
from ..formats.labeled import fingerprint
from ..fsio import check_output, check_output_dir, read_json, staged_dir
from ..model.resolve import local_model_dir
from .attention import train_attention
from .data import Splits, carve_validation, limit_train, load_splits
from .features import FeatureCache
from .finetune import DEVICES, FINETUNE_HEADS, FINETUNE_POOLINGS, PRECISIONS, FinetuneOptions, default_head, finetune
from .probes import MTEB_SEED, PROBE_HEADS, MlpOptions, mteb_samples, train_and_score
from .report import write_report_files
from .verdict import add_statistics, prediction_table

log = logging.getLogger("embedpipe.classify")
REPORT = "report.json"
# Fields that do not change the results: a report made with other values is still current.
NOT_IN_RESULT = ("out", "overwrite", "save_model", "threads", "device", "token_states_limit_mb")


@dataclass
class ClassifyJob:
    train: str = ""                          # labeled parquet file (text + label columns)
    test: str | None = None                  # test parquet; None = hold out test_fraction of train
    test_fraction: float = 0.2               # share of train held out (stratified) when test is None
    label_column: str = "label"              # column with the class labels (strings, ints or bools)
    text_column: str = "text"                # column with the texts
    poolings: tuple[str, ...] = ("cls", "mean")        # frozen-vector poolings to probe (pooling.POOLINGS)
    heads: tuple[str, ...] = ("linear", "mlp")         # probe heads: linear, mlp, attention (token states)
    layers: str | tuple[int, ...] = "last"   # last, all (0 = embeddings .. L) or hidden-state numbers (-1 = last)
    finetune: bool = False                   # also fine-tune the encoder, for each of poolings in cls/mean
    finetune_heads: tuple[str, ...] | None = None   # pooler, pre_classifier, linear; None = cls:pooler, mean:linear
    epochs: int = 3                          # fine-tuning epochs
    learning_rate: float = 5e-5              # fine-tuning AdamW peak learning rate
    finetune_batch_size: int = 32            # fine-tuning texts per step
    finetune_seeds: int = 1                  # fine-tuning runs per pooling (each a full training)
    finetune_train_limit: int | None = None  # fine-tune on at most this many of the training rows; None = all
    train_limit: int | None = None           # cap on training rows (stratified sample); None = all
    seeds: int = 3                           # probe repeats (mlp inits / MTEB experiments), mean ± std
    samples_per_label: int | None = None     # MTEB mode: each repeat trains on K rows per label
    mlp_epochs: int = 30                     # most epochs of the mlp / attention heads on frozen states
    val_fraction: float = 0.1                # training rows held out to pick epochs (early stopping); 0 = none
    patience: int = 5                        # mlp / attention: stop after this many epochs without gain
    token_states_limit_mb: float = 2048      # attention head: refuse a token-state cache larger than this
    device: str = "auto"                     # fine-tuning and attention head: auto, cpu, cuda, mps
    precision: str = "auto"                  # fine-tuning: auto (bf16 where native), fp32, bf16
    model: str | None = None                 # HF id or local dir; None = bundled all-MiniLM-L6-v2
    max_length: int | None = None            # tokens per text; None = the model's limit
    normalize: bool = True                   # L2-normalize frozen vectors (as `encode` does)
    split_seed: int = 0                      # seed of the held-out split and the train_limit sample
    threads: int | None = None               # onnxruntime / torch threads; None = all cores
    out: str | None = None                   # report directory; None = TRAIN_STEM.classify
    save_model: str | None = None            # save the best probe here (safetensors + json)
    overwrite: bool = False                  # replace an existing report / saved model directory

    def __post_init__(self):
        checks.path("train", self.train)
        checks.path("test", self.test, optional=True)
        checks.number_in("test_fraction", self.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.distinct_columns(("label_column", self.label_column), ("text_column", self.text_column))
        self.poolings = _names("poolings", self.poolings)
        for pooling in self.poolings:
            try:
                check_pooling(pooling)
            except ConfigError as e:
                raise ConfigError("poolings", str(e).removeprefix("pooling ")) from None
        self.heads = _names("heads", self.heads, allow_empty=True)
        for head in self.heads:
            checks.one_of("heads", head, PROBE_HEADS)
        self.layers = _layers(self.layers)
        checks.boolean("finetune", self.finetune)
        if self.finetune_heads is not None:
            self.finetune_heads = _names("finetune_heads", self.finetune_heads)
            for head in self.finetune_heads:
                checks.one_of("finetune_heads", head, FINETUNE_HEADS)
        checks.number_in("val_fraction", self.val_fraction, 0.0, 0.5, high_open=True)
        checks.at_least("patience", self.patience, 1)
        checks.number_in("token_states_limit_mb", self.token_states_limit_mb, 0.0, 1e9, low_open=True)
        checks.one_of("device", self.device, DEVICES)
        checks.one_of("precision", self.precision, PRECISIONS)
        if not self.heads and not self.finetune:
            raise ConfigError("heads", "is empty and finetune is off: nothing to do")
        if self.finetune and not set(self.poolings) & set(FINETUNE_POOLINGS):
            raise ConfigError("poolings", f"must include {' or '.join(FINETUNE_POOLINGS)} when finetune is on")
        for name in ("epochs", "seeds", "finetune_seeds", "mlp_epochs", "finetune_batch_size"):
            checks.at_least(name, getattr(self, name), 1)
        checks.number_in("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        for name in ("finetune_train_limit", "train_limit", "samples_per_label", "threads"):
            checks.at_least(name, getattr(self, name), 1, optional=True)
        checks.path("model", self.model, optional=True)
        checks.at_least("max_length", self.max_length, 2, optional=True)
        checks.boolean("normalize", self.normalize)
        checks.at_least("split_seed", self.split_seed, 0)
        checks.path("out", self.out, optional=True)
        checks.path("save_model", self.save_model, optional=True)
        checks.boolean("overwrite", self.overwrite)

    def check(self) -> ClassifyJob:
        """Kept for callers of the earlier API: the job checked itself when it was built."""
        return self

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        name = str(self.train).rstrip("/").rsplit("/", 1)[-1]
        return Path((name[:-len(".parquet")] if name.endswith(".parquet") else name) + ".classify")

    def config(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _layers(value) -> str | tuple[int, ...]:
    """``last``, ``all`` or a list of hidden-state numbers (negative from the end), checked."""
    if value in ("last", "all"):
        return value
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError("layers", f"must be last, all or a list of layer numbers (e.g. -1,-2,6), got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError("layers", f"must be whole numbers, got {item!r}")
    return tuple(dict.fromkeys(value))


def _names(field: str, values, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of names as a tuple of unique strings, in order."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError(field, f"must be a list of names, got {values!r}")
    if not values and not allow_empty:
        raise ConfigError(field, "must name at least one")
    for value in values:
        checks.text(field, value)
    return tuple(dict.fromkeys(values))


def _summary(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(statistics.pstdev(values)) if len(values) > 1 else 0.0


def result_key(method: str, pooling: str, layer: int, head: str) -> str:
    """One result's name in report.json and predictions.parquet, e.g. 'probe/mean/L6/mlp'."""
    return f"{method}/{pooling}/L{layer}/{head}"


def _result(method: str, pooling: str, layer: int, head: str, runs: list, test_rows: int, predict_seconds: float,
            **extra) -> tuple[dict, list[np.ndarray]]:
    """A report row and the runs' test predictions (for the paired statistics)."""
    accuracy, accuracy_std = _summary([r.accuracy for r in runs])
    f1, f1_std = _summary([r.macro_f1 for r in runs])
    epochs = [r.best_epoch for r in runs if r.best_epoch is not None]
    row = {"key": result_key(method, pooling, layer, head), "method": method, "pooling": pooling, "layer": layer,
           "head": head, "accuracy": accuracy, "macro_f1": f1, "accuracy_std": accuracy_std,
           "macro_f1_std": f1_std, "runs": len(runs), "accuracies": [r.accuracy for r in runs],
           "best_epochs": epochs or None,
           "train_seconds": float(np.mean([r.train_seconds for r in runs])),
           "predict_texts_per_s": test_rows / max(predict_seconds, 1e-9), **extra}
    return row, [r.predicted for r in runs]


def _probe_results(job: ClassifyJob, splits: Splits, cache: FeatureCache, fit: np.ndarray, val: np.ndarray,
                   last: int) -> tuple[list, dict, dict, dict]:
    """(report rows, {key: test predictions per run}, {(pooling, layer, head): Head}, encoding record)."""
    results, predictions, heads = [], {}, {}
    n_classes = len(splits.classes)
    mlp_options = MlpOptions(epochs=job.mlp_epochs, patience=job.patience)
    layers = resolve_layers(job.layers, last)
    pairs = [(p, layer) for layer in layers for p in job.poolings if p not in NEEDS_POOLER_WEIGHTS or layer == last]
    vector_heads = [h for h in job.heads if h != "attention"]
    attention = "attention" in job.heads
    spec = _spec(job, job.poolings[0])
    encoded = [cache.pooled(spec, part, pairs if vector_heads else [], what, token_states=attention,
                            token_limit_mb=job.token_states_limit_mb)
               for part, what in ((splits.train, "training texts"), (splits.test, "test texts"))]
    train, test = encoded
    encoding = {"pairs": len(pairs) if vector_heads else 0, "layers": layers, "token_states": attention,
                "train_seconds": round(train.seconds, 3), "test_seconds": round(test.seconds, 3)}
    y_fit, y_val, y_test = splits.train.y[fit], splits.train.y[val], splits.test.y
    if job.samples_per_label:
        picks = mteb_samples(splits.train.y, job.samples_per_label, job.seeds)
    test_rows = len(splits.test.rows)
    for pooling, layer in pairs if vector_heads else []:
        x_train, x_test = train.vectors[(pooling, layer)], test.vectors[(pooling, layer)]
        for head in vector_heads:
            runs = []
            if job.samples_per_label:   # MTEB: same sampled rows for every head; MTEB's LogisticRegression
                for seed, rows in enumerate(picks):
                    runs.append(train_and_score(head, x_train[rows], splits.train.y[rows], x_test, y_test,
                                                n_classes, MTEB_SEED if head == "linear" else seed, mlp_options,
                                                max_iter=100))
            elif head == "linear":      # lbfgs is deterministic: one run says it all
                runs.append(train_and_score(head, x_train[fit], y_fit, x_test, y_test, n_classes, 0))
            else:
                for seed in range(job.seeds):
                    runs.append(train_and_score(head, x_train[fit], y_fit, x_test, y_test, n_classes, seed,
                                                mlp_options, val=(x_train[val], y_val)))
            predict_s = test.seconds + float(np.mean([r.predict_seconds for r in runs]))
            row, predicted = _result("probe", pooling, layer, head, runs, test_rows, predict_s,
                                     train_rows=runs[0].train_rows, samples_per_label=job.samples_per_label)
            log.info("probe %s/L%d/%s: accuracy %.4f ± %.4f", pooling, layer, head, row["accuracy"],
                     row["accuracy_std"])
            results.append(row)
            predictions[row["key"]] = predicted
            heads[(pooling, layer, head)] = runs[0].head
    if attention:
        runs = [_attention_run(job, train.tokens, test.tokens, splits, fit, val, seed, mlp_options)
                for seed in range(job.seeds)]
        predict_s = test.seconds + float(np.mean([r.predict_seconds for r in runs]))
        row, predicted = _result("probe", "attention", last, "attention", runs, test_rows, predict_s,
                                 train_rows=runs[0].train_rows, samples_per_label=None)
        log.info("probe attention: accuracy %.4f ± %.4f", row["accuracy"], row["accuracy_std"])
        results.append(row)
        predictions[row["key"]] = predicted
    return results, predictions, heads, encoding


def _attention_run(job: ClassifyJob, train_tokens, test_tokens, splits: Splits, fit, val, seed: int, options):
    import torch

    from .finetune import resolve_device

    if resolve_device(job.device).type != "cpu":
        log.info("attention head: trained on the CPU (its batches are gathered from the token cache there)")
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads or threads)
    try:
        return train_attention(train_tokens.take(fit), splits.train.y[fit], test_tokens, splits.test.y,
                               len(splits.classes), seed, options,
                               val=(train_tokens.take(val), splits.train.y[val]))
    finally:
        torch.set_num_threads(threads)


def _spec(job: ClassifyJob, pooling: str) -> EncoderSpec:
    return EncoderSpec(model=job.model, pooling=pooling, normalize=job.normalize, max_length=job.max_length)


def _finetune_results(job: ClassifyJob, splits: Splits, last: int) -> tuple[list[dict], dict]:
    exported, max_length = prepare(_spec(job, "mean"))
    options = FinetuneOptions(epochs=job.epochs, batch_size=job.finetune_batch_size, lr=job.learning_rate,
                              threads=job.threads, device=job.device, precision=job.precision)
    _, val = carve_validation(splits.train.y, job.val_fraction, job.split_seed)
    results, predictions = [], {}
    for pooling in [p for p in job.poolings if p in FINETUNE_POOLINGS]:
        for head in job.finetune_heads or (default_head(pooling),):
            runs = [finetune(exported.info["model_path"], pooling, head, splits, options, max_length=max_length,
                             seed=seed, val_rows=val) for seed in range(job.finetune_seeds)]
            row, predicted = _result("finetune", pooling, last, head, runs, len(splits.test.rows),
                                     float(np.mean([r.predict_seconds for r in runs])),
                                     train_rows=len(splits.train.rows) - len(val), epochs=job.epochs,
                                     learning_rate=job.learning_rate,
                                     pooler_from_checkpoint=runs[0].pooler_from_checkpoint,
                                     device=runs[0].device, precision=runs[0].precision, history=runs[0].history)
            results.append(row)
            predictions[row["key"]] = predicted
    return results, predictions


def run_classify(job: ClassifyJob) -> dict:
    """Run every probe (and fine-tuning), publish the report directory, return the report dict."""
    inputs = {"train": job.train, "test": job.test, "model": local_model_dir(job.model)}
    out = check_output_dir(check_output(job.out_dir(), inputs), job.overwrite, REPORT)
    if job.save_model:
        check_output(job.save_model, {**inputs, "report directory": out})
        check_output_dir(job.save_model, job.overwrite, META)
    started, created = time.perf_counter(), datetime.now(timezone.utc)
    splits = load_splits(job.train, test=job.test, test_fraction=job.test_fraction, label_column=job.label_column,
                         text_column=job.text_column, train_limit=job.train_limit, seed=job.split_seed)
    finetune_splits = splits
    if job.finetune and job.finetune_train_limit is not None:
        finetune_splits = limit_train(splits, job.finetune_train_limit, job.split_seed, "finetune_train_limit")
    for pooling in job.poolings:
        prepare(_spec(job, pooling))   # fail on a bad model / pooler-less model before any work
    exported, max_length = prepare(_spec(job, job.poolings[0]))
    recipe = exported.recipe
    model_record = {"name": exported.info["model_name"],
                    "path": model_path_of(_spec(job, job.poolings[0]), exported.info),
                    "content_hash": exported.info["content_hash"], "max_length": max_length,
                    "normalize": job.normalize,
                    # The pooling the model was trained with (its sentence-transformers config), which
                    # the report marks; a plain transformers model has none of its own.
                    "own_pooling": recipe.pooling if recipe.sentence_transformers else None}
    cache = FeatureCache(threads=job.threads)
    last = cache.last_layer(_spec(job, job.poolings[0]))
    resolve_layers(job.layers, last)   # a layer the model has not: one line before any work
    model_record["layers"] = last
    fit, val = (carve_validation(splits.train.y, job.val_fraction, job.split_seed) if not job.samples_per_label
                else (np.arange(len(splits.train.rows)), np.zeros(0, dtype=np.int64)))
    results, predictions, heads, encoding = [], {}, {}, None
    if job.heads:
        results, predictions, heads, encoding = _probe_results(job, splits, cache, fit, val, last)
    if job.finetune:
        tuned, tuned_predictions = _finetune_results(job, finetune_splits, last)
        results += tuned
        predictions.update(tuned_predictions)
    for result in results:
        result["own_pooling"] = result["pooling"] == model_record["own_pooling"]
    best = max(results, key=lambda r: r["accuracy"])
    probes = [r for r in results if r["method"] == "probe" and heads.get((r["pooling"], r["layer"], r["head"]))
              and r["layer"] == last]
    report = {
        "embedpipe_version": __version__,
        "created_at": created.isoformat(timespec="seconds"),
        "config": job.config(),
        "inputs": {"train": {"path": str(job.train), "fingerprint": splits.train.source.fingerprint},
                   "test": ({"path": str(job.test), "fingerprint": splits.test.source.fingerprint}
                            if job.test else None)},
        "dataset": {"train_path": str(job.train), "classes": splits.classes, "n_classes": len(splits.classes),
                    "train_rows": int(len(splits.train.rows)), "fit_rows": int(len(fit)),
                    "validation_rows": int(len(val)), "test_rows": int(len(splits.test.rows)),
                    "test_source": (f"test file {job.test}" if job.test else
                                    f"{job.test_fraction:.0%} of the training file held out, stratified")},
        "model": model_record,
        "encoding": encoding,
        "results": results,
        "best": {k: best[k] for k in ("key", "method", "pooling", "layer", "head", "accuracy")},
        "notes": _notes(job, last),
        "saved_model": None,
        "seconds": 0.0,
    }
    add_statistics(report, predictions, splits.test.y)
    if job.save_model and probes:
        best_probe = max(probes, key=lambda r: r["accuracy"])
        spec = _spec(job, best_probe["pooling"])
        save_classifier(job.save_model, heads[(best_probe["pooling"], best_probe["layer"], best_probe["head"])],
                        splits.classes, spec_to_record(spec, max_length), model_record,
                        extra={"pooling": spec.pooling, "head": best_probe["head"],
                               "test_accuracy": best_probe["accuracy"], "trained_on": report["inputs"]},
                        overwrite=job.overwrite)
        report["saved_model"] = {"path": str(job.save_model), "pooling": best_probe["pooling"],
                                 "head": best_probe["head"]}
    report["seconds"] = round(time.perf_counter() - started, 2)
    _publish(out, report, prediction_table(predictions, splits.test.y, splits.classes))
    return report


def _notes(job: ClassifyJob, last: int) -> list[str]:
    notes = []
    if job.val_fraction and not job.samples_per_label:
        notes.append(f"validation: {job.val_fraction:.0%} of the training rows (stratified) are held out to pick "
                     "the epoch of the mlp and attention heads and of fine-tuning; every method trains on the "
                     "rest; the test rows are scored once")
    if "linear" in job.heads:
        notes.append("linear: scikit-learn LogisticRegression (lbfgs, C=1); deterministic, so one run"
                     if not job.samples_per_label else
                     f"MTEB mode: {job.seeds} experiments of {job.samples_per_label} training rows per label, "
                     "sampled as MTEB does; LogisticRegression(max_iter=100, random_state=42)")
    if "mlp" in job.heads:
        notes.append(f"mlp: Linear(dim,dim)+ReLU+dropout 0.2+Linear (DistilBERT's head), AdamW 1e-3, "
                     f"at most {job.mlp_epochs} epochs (patience {job.patience}), seeds 0..{job.seeds - 1}")
    if "attention" in job.heads:
        notes.append(f"attention: a learned query over the last layer's frozen token states (float16 cache), "
                     f"then the mlp head; trained like the mlp, seeds 0..{job.seeds - 1}")
    if job.layers != "last":
        notes.append(f"layers: hidden state 0 is the embeddings, {last} the last layer; every pooling x layer "
                     "came from one encoder pass" + ("; pooler only at the last layer (BERT's pooler reads it)"
                                                     if "pooler" in job.poolings else ""))
    if job.finetune:
        notes.append(f"fine-tuning: whole encoder, AdamW lr {job.learning_rate}, up to {job.epochs} epoch(s) "
                     f"(the best on the validation rows kept), batch {job.finetune_batch_size}, 10% linear warmup"
                     + (f"; on a stratified sample of {job.finetune_train_limit} training rows"
                        if job.finetune_train_limit else ""))
    notes.append("statistics: each method against the best, paired bootstrap (2000 resamples of the test rows) "
                 "95% CI of the accuracy difference over the seeds' mean, and McNemar's exact p on the first seed")
    return notes


def _publish(out: Path, report: dict, predictions) -> None:
    with staged_dir(out) as staging:
        write_report_files(staging, report, predictions)


def report_is_current(job: ClassifyJob) -> bool:
    """True when ``job.out`` holds a report made from the same inputs (by content) and config."""
    report = read_json(job.out_dir() / REPORT)
    if report is None:
        return False
    mine = {k: v for k, v in job.config().items() if k not in NOT_IN_RESULT}
    theirs = {k: v for k, v in report.get("config", {}).items() if k not in NOT_IN_RESULT}
    if mine != theirs:
        return False
    inputs = report.get("inputs", {})
    try:
        if inputs.get("train", {}).get("fingerprint") != fingerprint(job.train):
            return False
        return not job.test or (inputs.get("test") or {}).get("fingerprint") == fingerprint(job.test)
    except EmbedpipeError:
        return False
