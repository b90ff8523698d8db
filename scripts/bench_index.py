"""Benchmark `embedpipe index`: the auto choice against exact (Flat) search, on real and large sets.

1. Real: the WordNet retrieval set (88k glosses, 2000 queries), encoded with embedpipe's own
   encoder (all-MiniLM-L6-v2, mean pooling, normalized); queries encoded the way `search` does.
   Also reports nDCG@10 / Recall / MRR of the auto index and of exact search (via `evaluate`).
The auto index is built twice per set: tuned on held-out corpus vectors (the default) and tuned on
real query vectors (`--tuning-queries`, the second half of the queries); recall and queries/s are
measured on the first half, which neither tuning saw.

2. Large: 1M x 384 vectors synthesized from the real 88k (encoding 1M real texts does not fit a
   2-core budget): each is a random point on the segment between a real vector and one of its 10
   nearest real neighbours, plus isotropic Gaussian noise, re-normalized. Queries are the 2000 real
   query vectors, so recall is measured for real queries against this corpus.

For every index: build seconds, memory (bytes of the index), queries/s on the 2000 queries in one
batch, and recall@10 against Flat; plus a sweep of nprobe / efSearch for the recall-vs-QPS plot.

    python scripts/bench_index.py --corpus ../shared/data/wordnet_ret_corpus.parquet \\
        --queries ../shared/data/wordnet_ret_queries.parquet --out bench/index --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from embedpipe.encode import EncodeJob, encode_corpus  # noqa: E402
from embedpipe.encode.encoder import TextEncoder  # noqa: E402
from embedpipe.formats.vectors import MANIFEST, VectorWriter, open_vectors  # noqa: E402
from embedpipe.index import IndexConfig, build_index, open_index  # noqa: E402
from embedpipe.index.params import apply_search_params, parameter_string, tunable_parameter  # noqa: E402
from embedpipe.retrieval import evaluate  # noqa: E402

log = logging.getLogger("bench_index")


def timed_search(index: faiss.Index, queries: np.ndarray, k: int, repeats: int) -> tuple[float, np.ndarray]:
    """(queries/s, rows): best of ``repeats`` runs of one batch search."""
    best, rows = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        _, rows = index.search(queries, k)
        best = min(best, time.perf_counter() - started)
    return len(queries) / best, rows


def recall_vs(truth_ids: list[list], loaded, rows: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(loaded.ids_of(r))) / len(t) for t, r in zip(truth_ids, rows)]))


def sweep(loaded, queries: np.ndarray, truth_ids: list[list], tuned: str, repeats: int) -> list[dict]:
    """Recall and QPS over the search-parameter grid, up to 8x the tuned value (for the plot)."""
    knob = tunable_parameter(loaded.index)
    if knob is None:
        return []
    name, grid = knob
    tuned_value = int(tuned.split(",")[0].split("=")[1]) if tuned else grid[-1]
    points = []
    for value in [v for v in grid if v <= 8 * tuned_value]:
        params = parameter_string(loaded.index, name, value)
        apply_search_params(loaded.index, params)
        qps, rows = timed_search(loaded.index, queries, 10, repeats)
        points.append({"params": params, "qps": qps, "recall_at_10": recall_vs(truth_ids, loaded, rows)})
        log.info("  %-40s %9.0f q/s  recall@10 %.4f", params, qps, points[-1]["recall_at_10"])
    apply_search_params(loaded.index, tuned)
    return points


def bench_set(name: str, vectors_dir: Path, queries: np.ndarray, out: Path, configs: dict[str, IndexConfig],
              repeats: int) -> dict:
    """Flat first (the truth and the QPS baseline), then each config: build, measure, sweep."""
    log.info("== %s: %s", name, vectors_dir)
    flat_info = build_index(vectors_dir, out / f"{name}.flat.index", IndexConfig(factory="Flat"), overwrite=True)
    flat = open_index(out / f"{name}.flat.index")
    flat_qps, flat_rows = timed_search(flat.index, queries, 10, 1)
    truth_ids = [flat.ids_of(r) for r in flat_rows]
    rows = {"flat": {"factory": "Flat", "build_seconds": flat_info["build_seconds"],
                     "memory_bytes": flat_info["memory_bytes"], "qps": flat_qps, "recall_at_10": 1.0}}
    log.info("Flat: %.0f q/s, %.1f MB, built in %.1fs", flat_qps, flat_info["memory_bytes"] / 1e6,
             flat_info["build_seconds"])
    del flat
    for label, config in configs.items():
        info = build_index(vectors_dir, out / f"{name}.{label}.index", config, overwrite=True)
        loaded = open_index(out / f"{name}.{label}.index")
        qps, found = timed_search(loaded.index, queries, 10, repeats)
        rows[label] = {
            "factory": info["factory"], "max_memory": info["max_memory"], "search_params": info["search_params"],
            "build_seconds": info["build_seconds"], "memory_bytes": info["memory_bytes"], "qps": qps,
            "recall_at_10": recall_vs(truth_ids, loaded, found),
            "tuning_recall_at_10": info["recall_at_10"], "speedup_vs_flat": qps / flat_qps,
            "sweep": sweep(loaded, queries, truth_ids, info["search_params"], repeats),
        }
        log.info("%s: %s %s: %.0f q/s (%.1fx Flat), recall@10 %.4f on unseen real queries (%.4f on its "
                 "tuning queries), %.1f MB, built in %.1fs", label, info["factory"], info["search_params"], qps,
                 qps / flat_qps, rows[label]["recall_at_10"], info["recall_at_10"], info["memory_bytes"] / 1e6,
                 info["build_seconds"])
        del loaded
    return {"vectors": str(vectors_dir), "rows": open_vectors(vectors_dir).rows, "queries": len(queries),
            "indexes": rows}


RECIPES = {
    "noise": "point between a real vector and one of its 10 nearest real neighbours (t ~ U(0, 0.5)) "
             "+ N(0, noise^2/dim) per dim, normalized",
    "mixture": "Dirichlet(1,1,1) mixture of a real vector and two of its 10 nearest real neighbours, normalized "
               "(no noise: new points fill the real neighbourhoods, like more documents on the same topics)",
}


def synthesize(real_dir: Path, out_dir: Path, rows: int, seed: int, noise: float, recipe: str = "noise") -> Path:
    """``rows`` unit vectors near the real ones (see RECIPES); reused when present."""
    if (out_dir / MANIFEST).exists() and open_vectors(out_dir).rows == rows:
        log.info("reusing %s", out_dir)
        return out_dir
    real = open_vectors(real_dir)
    _, base = real.read_all()
    graph = faiss.IndexHNSWFlat(real.dim, 32, faiss.METRIC_INNER_PRODUCT)
    graph.add(base)
    graph.hnsw.efSearch = 64
    _, neighbours = graph.search(base, 11)  # column 0 is (almost always) the point itself
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with VectorWriter(out_dir, dim=real.dim, overwrite=True) as writer:
        for start in range(0, rows, 100_000):
            m = min(100_000, rows - start)
            a = rng.integers(0, len(base), m)
            b = neighbours[a, rng.integers(1, 11, m)]
            b = np.where(b >= 0, b, a)
            if recipe == "noise":
                t = rng.uniform(0.0, 0.5, m)[:, None].astype(np.float32)
                x = ((1 - t) * base[a] + t * base[b]
                     + rng.normal(0, noise / np.sqrt(real.dim), (m, real.dim)).astype(np.float32))
            else:
                c = neighbours[a, rng.integers(1, 11, m)]
                c = np.where(c >= 0, c, a)
                w = rng.dirichlet([1.0, 1.0, 1.0], m).astype(np.float32)
                x = w[:, :1] * base[a] + w[:, 1:2] * base[b] + w[:, 2:] * base[c]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            writer.write(pa.array([f"syn{start + i:07d}" for i in range(m)]), x)
        writer.publish({**{k: v for k, v in real.manifest.items() if k not in ("dim", "dtype", "rows", "shards")},
                        "synthetic": {"from": str(real_dir), "rows": rows, "seed": seed, "recipe": RECIPES[recipe],
                                      **({"noise": noise} if recipe == "noise" else {})}})
    log.info("synthesized %d vectors in %.1fs", rows, time.perf_counter() - started)
    return out_dir


def encode_real(args, out: Path) -> tuple[Path, np.ndarray, Path, Path]:
    """Corpus vectors (embedpipe encode), query vectors (the search path's encoder), BEIR files."""
    vectors_dir = Path(args.vectors) if args.vectors else out / "wordnet.vectors"
    if not (vectors_dir / MANIFEST).exists():
        started = time.perf_counter()
        encode_corpus(EncodeJob(args.corpus, out=str(vectors_dir), runner="local", threads=args.threads))
        log.info("encoded the corpus in %.1fs", time.perf_counter() - started)
    queries = pq.read_table(args.queries)
    query_file, qrels_file = out / "queries.parquet", out / "qrels.parquet"
    pq.write_table(queries.select(["id", "text"]), query_file)
    pq.write_table(pa.table({"query_id": queries.column("id"), "doc_id": queries.column("doc_id"),
                             "relevance": pa.array([1] * queries.num_rows, pa.int32())}), qrels_file)
    encoder = TextEncoder.from_manifest(open_vectors(vectors_dir).manifest, threads=args.threads)
    return vectors_dir, encoder.encode(queries.column("text").to_pylist()), query_file, qrels_file


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in ("real", "synthetic") if s in results]
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8), squeeze=False)
    for ax, key in zip(axes[0], sets):
        data = results[key]
        for label, row in data["indexes"].items():
            if label == "flat":
                ax.scatter([1.0], [row["qps"]], marker="*", s=160, color="black",
                           label=f"Flat ({row['qps']:.0f} q/s)", zorder=3)
                continue
            if row["sweep"]:
                ax.plot([p["recall_at_10"] for p in row["sweep"]], [p["qps"] for p in row["sweep"]], marker="o",
                        ms=3, label=f"{label}: {row['factory']}")
            ax.scatter([row["recall_at_10"]], [row["qps"]], s=90, facecolors="none", edgecolors="red", zorder=4)
            ax.annotate(f"tuned {row['search_params']}\n{row['speedup_vs_flat']:.0f}x Flat",
                        (row["recall_at_10"], row["qps"]), textcoords="offset points", xytext=(-110, -28), fontsize=8)
        ax.axvline(0.95, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact (real queries)")
        ax.set_ylabel(f"queries/s ({results['threads']} thread(s), batch of {data['queries']})")
        recipe = " (synthetic: " + results["recipe"] + ")" if key == "synthetic" else ""
        ax.set_title(f"{key}: {data['rows']:,} vectors x {results['dim']}{recipe}", fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def command_line(args: argparse.Namespace) -> str:
    parts = ["python scripts/bench_index.py"]
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif value not in (None, "", False):
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="corpus parquet (id, text)")
    parser.add_argument("--queries", required=True, help="queries parquet (id, text, doc_id)")
    parser.add_argument("--out", required=True, help="directory for vectors, indexes, JSON and PNG")
    parser.add_argument("--vectors", help="an existing `embedpipe encode` output for --corpus (skips encoding)")
    parser.add_argument("--synthetic-rows", type=int, default=1_000_000, help="0 skips the large set")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="noise", help="how synthetic vectors are made")
    parser.add_argument("--noise", type=float, default=0.35, help="norm of the Gaussian noise ('noise' recipe)")
    parser.add_argument("--skip-real", action="store_true", help="only the large synthetic set")
    parser.add_argument("--max-memory", default="4GB", help="budget of the auto choice")
    parser.add_argument("--also-memory", default="1.56GB",
                        help="a second, tighter budget for the large set (shows the next rung of the ladder); '' skips")
    parser.add_argument("--large-configs", default="",
                        help="comma-separated subset of auto,auto-query-tuned,auto@MEM-query-tuned for the large set "
                             "(each HNSW build of 1M vectors takes minutes on one core); '' = all")
    parser.add_argument("--threads", type=int, default=1, help="FAISS and onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per approximate search (best is kept)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(args.threads)
    results = {"threads": args.threads, "cpu_count": os.cpu_count(),
               "machine": platform.processor() or platform.machine(),
               "faiss": faiss.__version__, "k": 10, "recipe": args.recipe, "command": command_line(args)}

    vectors_dir, query_vectors, query_file, qrels_file = encode_real(args, out)
    results["dim"] = query_vectors.shape[1]
    half = len(query_vectors) // 2
    measured, tuning_dir = query_vectors[:half], out / "tuning-queries.vectors"
    with VectorWriter(tuning_dir, dim=query_vectors.shape[1], overwrite=True) as writer:
        writer.write(pa.array([f"q{i}" for i in range(half, len(query_vectors))]), query_vectors[half:])
        writer.publish({"normalize": True, "note": "second half of the benchmark's query vectors"})
    auto = IndexConfig(max_memory=args.max_memory)
    auto_q = IndexConfig(max_memory=args.max_memory, tuning_vectors=str(tuning_dir))
    if not args.skip_real:
        results["real"] = bench_set("wordnet", vectors_dir, measured, out,
                                    {"auto": auto, "auto-query-tuned": auto_q}, args.repeats)
        results["real"]["retrieval"] = {
            label: evaluate(out / f"wordnet.{label}.index", query_file, qrels_file, [10, 100])
            for label in ("auto", "auto-query-tuned")}
        for label, report in results["real"]["retrieval"].items():
            log.info("retrieval %s vs exact: %s", label, json.dumps({k: report[k] for k in ("index", "exact")}))
        (out / "bench_index.json").write_text(json.dumps(results, indent=2))

    if args.synthetic_rows:
        name = f"synthetic-{args.recipe}-{args.synthetic_rows}.vectors"
        synthetic = synthesize(vectors_dir, out / name, args.synthetic_rows, seed=0, noise=args.noise,
                               recipe=args.recipe)
        configs = {"auto": auto, "auto-query-tuned": auto_q}
        if args.also_memory:
            configs[f"auto@{args.also_memory}-query-tuned"] = IndexConfig(max_memory=args.also_memory,
                                                                          tuning_vectors=str(tuning_dir))
        if args.large_configs:
            wanted = args.large_configs.split(",")
            configs = {label: config for label, config in configs.items() if label in wanted}
        results["synthetic"] = bench_set("synthetic", synthetic, measured, out, configs, args.repeats)
        results["synthetic"]["recipe"] = open_vectors(synthetic).manifest["synthetic"]
    (out / "bench_index.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "bench_index.png")
    log.info("wrote %s and %s", out / "bench_index.json", out / "bench_index.png")


if __name__ == "__main__":
    main()
