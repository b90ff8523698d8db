"""The report directory: report.json (everything), report.md (a table to read), accuracy.png (a plot).

    >>> write_report_files(staging_dir, report)      # report: the dict run_classify builds  # doctest: +SKIP

report.md and the plot are made from report.json's ``results`` alone, so the three always agree.
"""

from __future__ import annotations

from pathlib import Path

from ..fsio import write_json_atomic, write_text_atomic

PLOT = "accuracy.png"
METHOD_ORDER = {("probe", "linear"): 0, ("probe", "mlp"): 1, ("finetune", "finetune"): 2}


def label(result: dict) -> str:
    """'linear probe', 'mlp probe' or 'fine-tuned'."""
    return "fine-tuned" if result["method"] == "finetune" else f"{result['head']} probe"


def markdown(report: dict) -> str:
    data, model = report["dataset"], report["model"]
    lines = [
        f"# embedpipe classify: {data['train_path']}",
        "",
        f"{data['n_classes']} classes; {data['train_rows']} training rows, {data['test_rows']} test rows "
        f"({data['test_source']}). Model {model['name']}, max_length {model['max_length']}, "
        f"vectors {'L2-normalized' if model['normalize'] else 'not normalized'}.",
        "",
        "| method | pooling | head | train rows | accuracy | ± std | macro-F1 | runs | train s | predict texts/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['method']} | {r['pooling']} | {r['head']} | {r['train_rows']} | {r['accuracy']:.4f} | "
                     f"{r['accuracy_std']:.4f} | {r['macro_f1']:.4f} | {r['runs']} | {r['train_seconds']:.1f} | "
                     f"{r['predict_texts_per_s']:.0f} |")
    best = report.get("best")
    if best:
        lines += ["", f"Best: {label(best)} on {best['pooling']} pooling, accuracy {best['accuracy']:.4f}."]
    notes = report.get("notes") or []
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for r in report["results"]:
        if r.get("history"):
            lines += ["", f"Fine-tuning ({r['pooling']}) by epoch: " + ", ".join(
                f"{h['epoch']}: {h['accuracy']:.4f}" for h in r["history"])]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Grouped bars: accuracy by pooling (groups) and method (bars), with ± std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    poolings = list(dict.fromkeys(r["pooling"] for r in results))
    methods = sorted({(r["method"], r["head"]) for r in results}, key=lambda m: METHOD_ORDER.get(m, 9))
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
        name = label({"method": method[0], "head": method[1]})
        bars = ax.bar(xs, ys, width * 0.95, yerr=errs, capsize=3, label=name)
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


def write_report_files(directory: Path, report: dict) -> None:
    write_json_atomic(directory / "report.json", report)
    write_text_atomic(directory / "report.md", markdown(report))
    plot(report, directory / PLOT)
