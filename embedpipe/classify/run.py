"""run_classify: probes on frozen pooled vectors (and fine-tuning) over layers x poolings x seeds, as a report.

    >>> report = run_classify(ClassifyJob(train="train.parquet", test="test.parquet",  # doctest: +SKIP
    ...                                   out="report_dir",
    ...                                   poolings=("cls", "mean"), heads=("linear", "mlp")))  # doctest: +SKIP
    >>> [(r["method"], r["pooling"], r["head"], round(r["accuracy"], 3)) for r in report["results"]]  # doctest: +SKIP

The report directory (report.json, report.md, accuracy.png; report.py) is written in a staging
directory and renamed into place, so an earlier report survives a failed run. report.json records
the job's config and the content fingerprints of the input files (see ``report_is_current``).
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import __version__
from ..encode.encoder import model_path_of, prepare, spec_to_record
from ..encode.layers import resolve_layers
from ..encode.pooling import NEEDS_POOLER_WEIGHTS
from ..errors import BadInput
from ..formats.classifier import META, save_classifier
from ..fsio import check_output, check_output_dir, staged_dir
from ..model.resolve import local_model_dir
from .attention import train_attention
from .compact import stored_like
from .data import Splits, carve_validation, limit_train, load_splits
from .documents import document_pairs, document_vectors, from_chunks
from .features import FeatureCache
from .finetune import FINETUNE_POOLINGS, FinetuneOptions, default_head, finetune
from .job import ClassifyJob
from .notes import method_notes
from .probes import MTEB_SEED, MlpOptions, mteb_samples, train_and_score
from .report import REPORT, write_report_files
from .verdict import add_statistics, prediction_table

log = logging.getLogger("embedpipe.classify")


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
    spec = job.encoder_spec(job.poolings[0])
    encoded = [cache.pooled(spec, part, pairs if vector_heads else [], what, token_states=attention,
                            token_limit_mb=job.token_states_limit_mb)
               for part, what in ((splits.train, "training texts"), (splits.test, "test texts"))]
    train, test = encoded
    if job.chunk_tokens is not None and vector_heads:   # whole documents from their chunks (classify/documents.py)
        chunked = [(p, last) for p in job.poolings]
        for got, part in zip(encoded, (splits.train, splits.test)):
            got.vectors.update(document_vectors(cache, spec, part, chunked, job.chunk_tokens, job.chunk_overlap))
        pairs = pairs + document_pairs(chunked)
    encoding = {"pairs": len(pairs) if vector_heads else 0, "layers": layers, "token_states": attention,
                "train_seconds": round(train.seconds, 3), "test_seconds": round(test.seconds, 3)}
    y_fit, y_val, y_test = splits.train.y[fit], splits.train.y[val], splits.test.y
    if job.samples_per_label:
        picks = mteb_samples(splits.train.y, job.samples_per_label, job.seeds)
    test_rows = len(splits.test.rows)
    for pooling, layer in pairs if vector_heads else []:
        x_train, x_test = stored_like(job.vector_dtype, job.truncate_dim, job.normalize,   # compact.py
                                      train.vectors[(pooling, layer)], test.vectors[(pooling, layer)], fit)
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
            if not from_chunks(pooling):   # a saved probe applies to a text's own vector only
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


def _finetune_results(job: ClassifyJob, splits: Splits, last: int) -> tuple[list[dict], dict]:
    exported, max_length = prepare(job.encoder_spec("mean"))
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
    started, created = time.perf_counter(), datetime.now(UTC)
    splits = load_splits(job.train, test=job.test, test_fraction=job.test_fraction, label_column=job.label_column,
                         text_column=job.text_column, train_limit=job.train_limit, seed=job.split_seed)
    finetune_splits = splits
    if job.finetune and job.finetune_train_limit is not None:
        finetune_splits = limit_train(splits, job.finetune_train_limit, job.split_seed, "finetune_train_limit")
    for pooling in job.poolings:
        prepare(job.encoder_spec(pooling))   # fail on a bad model / pooler-less model before any work
    exported, max_length = prepare(job.encoder_spec(job.poolings[0]))
    recipe = exported.recipe
    model_record = {"name": exported.info["model_name"],
                    "path": model_path_of(job.encoder_spec(job.poolings[0]), exported.info),
                    "content_hash": exported.info["content_hash"], "max_length": max_length,
                    "normalize": job.normalize,
                    # The pooling the model was trained with (its sentence-transformers config), which
                    # the report marks; a plain transformers model has none of its own.
                    "own_pooling": recipe.pooling if recipe.sentence_transformers else None}
    cache = FeatureCache(threads=job.threads)
    last = cache.last_layer(job.encoder_spec(job.poolings[0]))
    layers = resolve_layers(job.layers, last)   # a layer the model has not: one line before any work
    if not job.finetune and last not in layers and set(job.poolings) <= set(NEEDS_POOLER_WEIGHTS):
        raise BadInput(f"pooling {job.poolings[0]!r} applies to the last layer ({last}) only, and layers "
                       f"{','.join(map(str, layers))} leave it out: nothing would be compared; add layer {last} "
                       "or another pooling", fields=("layers",))
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
                    "test_fingerprint": splits.test.fingerprint(),
                    "test_source": (f"test file {job.test}" if job.test else
                                    f"{job.test_fraction:.0%} of the training file held out, stratified")},
        "model": model_record,
        "encoding": encoding,
        "results": results,
        "best": {k: best[k] for k in ("key", "method", "pooling", "layer", "head", "accuracy")},
        "notes": method_notes(job, last),
        "saved_model": None,
        "seconds": 0.0,
    }
    add_statistics(report, predictions, splits.test.y)
    if job.save_model and probes:
        best_probe = max(probes, key=lambda r: r["accuracy"])
        spec = job.encoder_spec(best_probe["pooling"])
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


def _publish(out: Path, report: dict, predictions) -> None:
    with staged_dir(out) as staging:
        write_report_files(staging, report, predictions)
