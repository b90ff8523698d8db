"""The report directory: report.json (everything), report.md (the verdict, then a table to read),
accuracy.png (methods by pooling), layers.png (accuracy by layer, when several layers were probed)
and predictions.parquet (every method's test predictions, to check the statistics); in MTEB mode
(samples_per_label) also mteb/KEY.json, each probe as MTEB's result JSON.

    >>> write_report_files(staging_dir, report, predictions)   # report: the dict run_classify builds  # doctest: +SKIP

report.md and the plots are made from report.json alone, so they always agree with it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EmbedpipeError
from ..formats.labeled import fingerprint
from ..formats.reports import mteb_classification_results
from ..fsio import atomic_path, read_json, write_json_atomic, write_text_atomic
from .job import NOT_IN_RESULT, ClassifyJob

REPORT = "report.json"
PLOT = "accuracy.png"
LAYER_PLOT = "layers.png"
PREDICTIONS = "predictions.parquet"
METHOD_ORDER = {"linear": 0, "mlp": 1, "attention": 2}


def label(result: dict) -> str:
    """'linear probe', 'mlp probe', 'attention probe' or 'fine-tuned (pooler)'."""
    return f"fine-tuned ({result['head']})" if result["method"] == "finetune" else f"{result['head']} probe"


def _vs_best(r: dict) -> tuple[str, str, str]:
    c = r.get("vs_best")
    if not c:
        return "best", "", ""
    p = "< 0.001" if c["p_value"] < 0.001 else f"{c['p_value']:.3f}"
    return (f"{-100 * c['difference'] + 0.0:+.1f}",   # + 0.0: no "-0.0"
            f"{-100 * c['ci_high'] + 0.0:+.1f} to {-100 * c['ci_low'] + 0.0:+.1f}", p)


def pooling_label(pooling: str, own: str | None) -> str:
    """'cls' or, for the pooling the model was trained with, 'cls *(model's own)*'."""
    return f"{pooling} *(model's own)*" if pooling == own else pooling


def markdown(report: dict) -> str:
    data, model = report["dataset"], report["model"]
    lines = [f"# embedpipe classify: {data['train_path']}", "", "## Verdict", ""]
    lines += [f"- {sentence}" for sentence in report.get("verdict") or []]
    lines += [
        "",
        f"{data['n_classes']} classes; {data['train_rows']} training rows"
        + (f" ({data['validation_rows']} of them held out for validation)" if data.get("validation_rows") else "")
        + f", {data['test_rows']} test rows ({data['test_source']}). Model {model['name']}, "
        f"max_length {model['max_length']}, vectors {'L2-normalized' if model['normalize'] else 'not normalized'}.",
        "",
        "Δ vs best: this method's accuracy minus the best's, in points, with its paired bootstrap 95% CI and "
        "McNemar's exact p.",
        "",
        "| method | pooling | layer | head | train rows | accuracy | ± std | macro-F1 | runs | Δ vs best | 95% CI "
        "| McNemar p | epochs kept | train s | predict texts/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    own = model.get("own_pooling")
    if own:
        where = next(i for i, line in enumerate(lines) if line.startswith("Δ vs best:"))
        lines[where:where] = [f"This model was trained with {own} pooling (its sentence-transformers "
                              "configuration); its rows are marked *(model's own)*.", ""]
    for r in report["results"]:
        delta, ci, p = _vs_best(r)
        epochs = ",".join(map(str, r["best_epochs"])) if r.get("best_epochs") else ""
        lines.append(f"| {r['method']} | {pooling_label(r['pooling'], own)} | {r['layer']} | {r['head']} | "
                     f"{r['train_rows']} | "
                     f"{r['accuracy']:.4f} | {r['accuracy_std']:.4f} | {r['macro_f1']:.4f} | {r['runs']} | "
                     f"{delta} | {ci} | {p} | {epochs} | {r['train_seconds']:.1f} | {r['predict_texts_per_s']:.0f} |")
    encoding = report.get("encoding")
    if encoding and encoding.get("pairs"):
        lines += ["", f"Encoding: {encoding['pairs']} pooling x layer vector sets from one encoder pass: "
                      f"{encoding['train_seconds']:.1f} s for the training texts, {encoding['test_seconds']:.1f} s "
                      "for the test texts (or when they were cached)."]
    notes = report.get("notes") or []
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for r in report["results"]:
        if r.get("history"):
            lines += ["", f"Fine-tuning {r['pooling']} + {r['head']} by epoch: " + ", ".join(
                f"{h['epoch']}: loss {h['loss']:.4f}" + (f", validation {h['val_accuracy']:.4f}"
                                                         if "val_accuracy" in h else "") for h in r["history"])]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Grouped bars: accuracy by pooling (groups) and method (bars), with ± std error bars; the last
    layer's probes, the attention head and fine-tuning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = report["model"].get("layers")
    results = [r for r in report["results"] if r["method"] == "finetune" or r["layer"] == last or last is None]
    poolings = list(dict.fromkeys(r["pooling"] for r in results))
    methods = sorted({(r["method"], r["head"]) for r in results},
                     key=lambda m: (m[0] == "finetune", METHOD_ORDER.get(m[1], 9), m[1]))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(poolings) + 2), 4.2))
    for i, method in enumerate(methods):
        xs, ys, errs = [], [], []
        for j, pooling in enumerate(poolings):
            for r in results:
                if (r["method"], r["head"]) == method and r["pooling"] == pooling:
                    xs.append(j + (i - (len(methods) - 1) / 2) * width)
                    ys.append(r["accuracy"])
                    errs.append(r["accuracy_std"])
        bars = ax.bar(xs, ys, width * 0.95, yerr=errs, capsize=3, label=label({"method": method[0],
                                                                                "head": method[1]}))
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(range(len(poolings)), poolings)
    ax.set_xlabel("pooling")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, min(1.05, max((r["accuracy"] + r["accuracy_std"] for r in results), default=1) + 0.1))
    ax.set_title(f"{report['model']['name'].rsplit('/', 1)[-1]}: {report['dataset']['n_classes']} classes, "
                 f"{report['dataset']['train_rows']} training rows", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layer_plot(report: dict, path: Path) -> bool:
    """Accuracy by layer, one line per pooling, one panel per probe head; False when one layer only."""
    probes = [r for r in report["results"] if r["method"] == "probe" and r["head"] != "attention"]
    if len({r["layer"] for r in probes}) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = sorted({r["head"] for r in probes}, key=lambda h: METHOD_ORDER.get(h, 9))
    fig, axes = plt.subplots(1, len(heads), figsize=(5.2 * len(heads), 4.0), squeeze=False, sharey=True)
    for ax, head in zip(axes[0], heads):
        for pooling in dict.fromkeys(r["pooling"] for r in probes if r["head"] == head):
            rows = sorted((r for r in probes if (r["head"], r["pooling"]) == (head, pooling)), key=lambda r: r["layer"])
            ax.errorbar([r["layer"] for r in rows], [r["accuracy"] for r in rows],
                        yerr=[r["accuracy_std"] for r in rows], marker="o", capsize=2, label=pooling)
        ax.set_title(f"{head} probe", fontsize=10)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test accuracy")
    fig.suptitle(f"{report['model']['name'].rsplit('/', 1)[-1]}: accuracy by layer and pooling", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


MTEB_DIR = "mteb"  # MTEB mode: one MTEB result JSON per probe (formats/reports.py)


def write_report_files(directory: Path, report: dict, predictions=None) -> None:
    """report.json, report.md, the plots and (given the table) predictions.parquet into ``directory``."""
    import pyarrow.parquet as pq

    write_json_atomic(directory / REPORT, report)
    write_text_atomic(directory / "report.md", markdown(report))
    plot(report, directory / PLOT)
    layer_plot(report, directory / LAYER_PLOT)
    mteb = mteb_classification_results(report)  # MTEB mode (samples_per_label): its result files too
    if mteb:
        (directory / MTEB_DIR).mkdir(exist_ok=True)
        for name, result in mteb.items():
            write_json_atomic(directory / MTEB_DIR / name, result)
    if predictions is not None:
        with atomic_path(directory / PREDICTIONS) as tmp:
            pq.write_table(predictions, tmp)


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
