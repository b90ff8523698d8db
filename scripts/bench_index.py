"""Benchmark `embedpipe index`: the auto choice and named routes against exact (Flat) search, on a
real set and a large one, as the table of issue 18 asks (vectors, factory, build s, memory,
queries/s, recall@10 on held-out real queries, x Flat measured side by side).

1. Real: the WordNet retrieval set (88k glosses, 2000 queries), encoded with embedpipe's own
   encoder (all-MiniLM-L6-v2, mean pooling, normalized); queries encoded the way `search` does.
   Also reports nDCG@10 / Recall / MRR of the auto index and of exact search (via `evaluate`).
The auto index is built twice per set: tuned on held-out corpus vectors (the default) and tuned on
real query vectors (`--tuning-queries`, the second half of the queries); recall and queries/s are
measured on the first half, which no tuning saw.

2. Large: 1M x 384 vectors synthesized from the real 88k (encoding 1M real texts does not fit a
   2-core budget): each is a random point on the segment between a real vector and one of its 10
   nearest real neighbours, plus isotropic Gaussian noise, re-normalized. Queries are the 2000 real
   query vectors, so recall is measured for real queries against this corpus. Besides the auto
   configs: `--route FACTORY` (tuned on the tuning half; `--ef-construction` for HNSW routes) and
   `--prebuilt LABEL=DIR` (an index built elsewhere, e.g. by the `embedpipe index` CLI).

Per index: build seconds, memory (bytes of the index), recall@10 against Flat on the held-out half,
and queries/s of one batch of the held-out half timed side by side with Flat (Flat, index, Flat,
next index ... for --repeats rounds; best of each, and the per-round ratios). An index directory
that already holds the same config over the same vectors is reused. Then a sweep of nprobe /
efSearch over all 2000 queries and the tuning-margin analysis: the queries split at random many
times into tuning and unseen sets, the tuner's rule applied with each margin (margin_analysis).
Writes bench_index.json, table.md (the issue's table) and bench_index.png.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_index.py --corpus ../shared/data/wordnet_ret_corpus.parquet \\
        --queries ../shared/data/wordnet_ret_queries.parquet --out bench/index --threads 1 \\
        --large-configs none --route HNSW32 --ef-construction 80 --prebuilt cli-auto=bench/cli-auto.index
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import re
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
from embedpipe.fsio import read_json  # noqa: E402
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


def per_query_recall(truth_ids: list[list], loaded, rows: np.ndarray) -> np.ndarray:
    return np.array([len(set(t) & set(loaded.ids_of(r))) / len(t) for t, r in zip(truth_ids, rows)])


def recall_vs(truth_ids: list[list], loaded, rows: np.ndarray) -> float:
    return float(per_query_recall(truth_ids, loaded, rows).mean())


def sweep(loaded, queries: np.ndarray, truth_ids: list[list], tuned: str, held_out: int) -> list[dict]:
    """Recall over the search-parameter grid, from 1/8 to 4x the tuned value, on every real query
    (the first ``held_out`` are the held-out half): recall on the held-out half, on the tuning half,
    and per query (for the tuning-margin analysis), with the queries/s of one search of them all."""
    knob = tunable_parameter(loaded.index)
    if knob is None:
        return []
    name, grid = knob
    tuned_value = int(tuned.split(",")[0].split("=")[1]) if tuned else grid[-1]
    points = []
    on_grid = [v for v in grid if tuned_value / 8 <= v <= 4 * tuned_value]
    halfway = {(a + b) // 2 for a, b in zip(on_grid, on_grid[1:]) if a < (a + b) // 2 < b}  # tried by the tuner too
    for value in sorted(set(on_grid) | halfway):
        params = parameter_string(loaded.index, name, value)
        apply_search_params(loaded.index, params)
        qps, rows = timed_search(loaded.index, queries, 10, 1)
        per_query = per_query_recall(truth_ids, loaded, rows)
        points.append({"params": params, "value": value, "on_grid": value in on_grid, "qps": qps,
                       "recall_at_10": float(per_query[:held_out].mean()),
                       "tuning_half_recall_at_10": float(per_query[held_out:].mean()),
                       "per_query": per_query.round(3).tolist()})
        log.info("  %-40s %9.0f q/s  recall@10 %.4f held-out, %.4f tuning half", params, qps,
                 points[-1]["recall_at_10"], points[-1]["tuning_half_recall_at_10"])
    apply_search_params(loaded.index, tuned)
    return points


def margin_analysis(points: list[dict], target: float, margins: list[float], sizes: list[int],
                    splits: int = 400, seed: int = 0) -> list[dict]:
    """What a tuning margin buys on unseen queries: the real queries are split at random ``splits``
    times into a tuning set of ``size`` and a held-out set of the rest; on each split the tuner's rule
    (the smallest grid value whose mean recall on the tuning set reaches target + margin) picks a value,
    and its recall on the held-out set is read off. Per (size, margin): the mean gap (tuning minus
    held-out recall at the pick), how often held-out recall fell below the target, and the mean
    held-out recall and queries/s of the picks. The rule is tune_search_params's: the first grid value
    that reaches the aim, or the value halfway down to the grid step below when that reaches it too."""
    if not points:
        return []
    recall = np.array([p["per_query"] for p in points])  # (values: grid and halfway, queries)
    qps = np.array([p["qps"] for p in points])
    grid = [i for i, p in enumerate(points) if p["on_grid"]]

    def pick(tuned: np.ndarray, aim: float) -> int:
        reaching = [g for g in grid if tuned[g] >= aim]
        if not reaching:
            return grid[-1]
        first = reaching[0]
        below = [g for g in grid if g < first]
        if below and below[-1] + 1 < first and tuned[below[-1] + 1] >= aim:  # the halfway value
            return below[-1] + 1
        return first

    rng, n = np.random.default_rng(seed), recall.shape[1]
    out = []
    for size in sizes:
        if size >= n:
            continue
        draws = [rng.permutation(n) for _ in range(splits)]
        for margin in margins:
            gaps, held, speed, missed = [], [], [], 0
            for order in draws:
                tune, rest = order[:size], order[size:]
                tuned = recall[:, tune].mean(axis=1)
                chosen = pick(tuned, min(1.0, target + margin))
                unseen = recall[chosen, rest].mean()
                gaps.append(tuned[chosen] - unseen)
                held.append(unseen)
                speed.append(qps[chosen])
                missed += unseen < target
            out.append({"tuning_queries": size, "margin": margin, "mean_gap": float(np.mean(gaps)),
                        "held_out_below_target": missed / splits, "mean_held_out_recall": float(np.mean(held)),
                        "mean_qps": float(np.mean(speed))})
            log.info("  tuning on %4d queries, margin %.3f: gap %+.4f, held-out below %.2f in %4.0f%% of splits "
                     "(mean %.4f), %.0f q/s", size, margin, out[-1]["mean_gap"], target,
                     100 * out[-1]["held_out_below_target"], out[-1]["mean_held_out_recall"], out[-1]["mean_qps"])
    return out


def _plain(config: IndexConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def build_or_reuse(vectors_dir: Path, out: Path, config: IndexConfig, threads: int) -> dict:
    """build_index, unless ``out`` already holds an index of these vectors built with this config
    (a 1M build takes minutes: a rerun of the benchmark measures the indexes it has)."""
    info = read_json(out / "index.json") if (out / "index.json").exists() else None
    manifest = open_vectors(vectors_dir).manifest_sha256()
    if info and info.get("config") == _plain(config) and info.get("source_manifest_sha256") == manifest:
        log.info("reusing %s (%s, built in %.0fs)", out, info["factory"], info["build_seconds"])
        return info
    return build_index(vectors_dir, out, config, overwrite=True, threads=threads)


def side_by_side(flat, indexes: dict, queries: np.ndarray, rounds: int) -> dict[str, dict]:
    """Queries/s of Flat and of each index, timed alternately (Flat, index, Flat, next index, ...) for
    ``rounds`` rounds, so that every ratio compares runs a few seconds apart on the same machine state
    (other jobs on a shared machine come and go). Per index: best queries/s, the best Flat run, and
    the ratio of the two; the per-round ratios too."""
    times: dict[str, dict] = {label: {"qps": [], "flat_qps": []} for label in indexes}
    for round_ in range(rounds):
        for label, loaded in indexes.items():
            flat_qps, _ = timed_search(flat.index, queries, 10, 1)
            qps, _ = timed_search(loaded.index, queries, 10, 1)
            times[label]["flat_qps"].append(flat_qps)
            times[label]["qps"].append(qps)
            log.info("round %d: Flat %.0f q/s, %s %.0f q/s (%.1fx)", round_ + 1, flat_qps, label, qps, qps / flat_qps)
    return {label: {"qps": max(t["qps"]), "flat_qps": max(t["flat_qps"]),
                    "speedup_vs_flat": max(t["qps"]) / max(t["flat_qps"]),
                    "round_speedups": [q / f for q, f in zip(t["qps"], t["flat_qps"])]}
            for label, t in times.items()}


def bench_set(name: str, vectors_dir: Path, queries: np.ndarray, held_out: int, out: Path,
              configs: dict[str, IndexConfig], prebuilt: dict[str, Path], args) -> dict:
    """Flat (the truth and the QPS baseline) and each index: build (or reuse), recall on the held-out
    queries (the first ``held_out`` of ``queries``; the rest are the tuning half), queries/s side by
    side with Flat, a sweep of the search parameter over all the queries and the margin analysis."""
    log.info("== %s: %s", name, vectors_dir)
    flat_info = build_or_reuse(vectors_dir, out / f"{name}.flat.index", IndexConfig(factory="Flat"), args.threads)
    flat = open_index(out / f"{name}.flat.index")
    _, flat_rows = flat.index.search(queries, 10)
    truth_ids = [flat.ids_of(r) for r in flat_rows]
    measured = queries[:held_out]
    rows = {"flat": {"factory": "Flat", "build_seconds": flat_info["build_seconds"],
                     "memory_bytes": flat_info["memory_bytes"], "recall_at_10": 1.0, "search_params": ""}}
    infos = {label: build_or_reuse(vectors_dir, out / f"{name}.{label}.index", config, args.threads)
             for label, config in configs.items()}
    for label, path in prebuilt.items():
        infos[label] = read_json(path / "index.json")
        log.info("%s: %s built elsewhere (%s)", label, path, infos[label]["factory"])
    paths = {label: out / f"{name}.{label}.index" for label in configs} | prebuilt
    loaded = {label: open_index(paths[label]) for label in infos}
    timing = side_by_side(flat, loaded, measured, args.repeats)
    for label, info in infos.items():
        index = loaded[label]
        found = index.index.search(measured, 10)[1]
        rows[label] = {
            "factory": info["factory"], "factory_requested": info.get("factory_requested"),
            "index_dir": str(paths[label]), "max_memory": info["max_memory"],
            "search_params": info["search_params"], "build_seconds": info["build_seconds"],
            "memory_bytes": info["memory_bytes"], "recall_at_10": recall_vs(truth_ids[:held_out], index, found),
            "tuning_recall_at_10": info["recall_at_10"], "tuning": info["tuning"].get("on"),
            "target_recall": info["target_recall"], "recall_margin": info.get("recall_margin", 0.0),
            "auto_choice": info.get("auto_choice"), **timing[label],
        }
        log.info("%s: %s %s: %.0f q/s (%.1fx Flat side by side), recall@10 %.4f on held-out real queries "
                 "(%.4f on its tuning queries), %.1f MB, built in %.1fs", label, info["factory"],
                 info["search_params"], rows[label]["qps"], rows[label]["speedup_vs_flat"],
                 rows[label]["recall_at_10"], info["recall_at_10"], info["memory_bytes"] / 1e6, info["build_seconds"])
        if args.sweep:
            points = sweep(index, queries, truth_ids, info["search_params"], held_out)
            rows[label]["sweep"] = [{k: v for k, v in p.items() if k != "per_query"} for p in points]
            rows[label]["margins"] = margin_analysis(points, info["target_recall"], MARGINS,
                                                     [size for size in (250, 500, 1000) if size < len(queries)])
    flat_best = max((t["flat_qps"] for t in timing.values()), default=None)
    if flat_best is None:
        flat_best = timed_search(flat.index, measured, 10, args.repeats)[0]
    rows["flat"].update(qps=flat_best, speedup_vs_flat=1.0)
    return {"vectors": str(vectors_dir), "rows": open_vectors(vectors_dir).rows, "queries": len(queries),
            "held_out_queries": held_out, "indexes": rows}


MARGINS = [0.0, 0.005, 0.01, 0.015, 0.02]


def table(results: dict) -> str:
    """The issue's index table, in markdown, from the results."""
    lines = ["| vectors | factory | search params | build s | memory MB | queries/s | recall@10 held-out | "
             "recall@10 tuning | x Flat (rounds) |", "|---|---|---|---|---|---|---|---|---|"]
    for key in ("real", "synthetic"):
        if key not in results:
            continue
        data = results[key]
        what = f"{data['rows']:,} {'real' if key == 'real' else 'synthetic'}"
        for label, row in data["indexes"].items():
            rounds = ", ".join(f"{r:.1f}" for r in row.get("round_speedups", []))
            factory = row["factory"] if label == "flat" else f"{label}: {row['factory']}"
            tuning = "–" if label == "flat" else f"{row['tuning_recall_at_10']:.4f}"
            lines.append(f"| {what} | {factory} | {row['search_params'] or '–'} | {row['build_seconds']:.0f} | "
                         f"{row['memory_bytes'] / 1e6:.0f} | {row['qps']:.0f} | {row['recall_at_10']:.4f} | {tuning} | "
                         f"{row['speedup_vs_flat']:.1f}x{f' ({rounds})' if rounds else ''} |")
    return "\n".join(lines) + "\n"


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
            if row.get("sweep"):
                ax.plot([p["recall_at_10"] for p in row["sweep"]], [p["qps"] for p in row["sweep"]], marker="o",
                        ms=3, label=f"{label}: {row['factory']}")
            ax.scatter([row["recall_at_10"]], [row["qps"]], s=90, facecolors="none", edgecolors="red", zorder=4)
            ax.annotate(f"tuned {row['search_params']}\n{row['speedup_vs_flat']:.0f}x Flat",
                        (row["recall_at_10"], row["qps"]), textcoords="offset points", xytext=(-110, -28), fontsize=8)
        ax.axvline(0.95, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact (real queries)")
        ax.set_ylabel(f"queries/s ({results['threads']} thread(s), batch of {data['held_out_queries']})")
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


def label_of(factory: str) -> str:
    return factory.replace(",", "_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="corpus parquet (id, text)")
    parser.add_argument("--queries", required=True, help="queries parquet (id, text, doc_id)")
    parser.add_argument("--out", required=True, help="directory for vectors, indexes, JSON, table and PNG")
    parser.add_argument("--vectors", help="an existing `embedpipe encode` output for --corpus (skips encoding)")
    parser.add_argument("--synthetic-rows", type=int, default=1_000_000, help="0 skips the large set")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="noise", help="how synthetic vectors are made")
    parser.add_argument("--noise", type=float, default=0.35, help="norm of the Gaussian noise ('noise' recipe)")
    parser.add_argument("--skip-real", action="store_true", help="only the large synthetic set")
    parser.add_argument("--max-memory", default="4GB", help="budget of the auto choice")
    parser.add_argument("--recall-margin", type=float, default=IndexConfig.recall_margin,
                        help="IndexConfig.recall_margin of every index built here")
    parser.add_argument("--also-memory", default="1.56GB",
                        help="a second, tighter budget for the large set (shows the next rung of the ladder); '' skips")
    parser.add_argument("--large-configs", default="",
                        help="comma-separated subset of auto,auto-query-tuned,auto@MEM-query-tuned for the large set "
                             "(each HNSW build of 1M vectors takes minutes on one core); '' = all, 'none' = none")
    parser.add_argument("--route", action="append", default=[], metavar="FACTORY",
                        help="a FAISS factory to build on the large set too, tuned on the tuning half of the real "
                             "queries (repeatable), e.g. HNSW32 or 'OPQ96_384,IVF4096,PQ96x4fs,RFlat'")
    parser.add_argument("--ef-construction", type=int, default=None, help="efConstruction of --route HNSW indexes")
    parser.add_argument("--prebuilt", action="append", default=[], metavar="LABEL=INDEX_DIR",
                        help="an index of the large set built elsewhere (e.g. by `embedpipe index`), measured "
                             "side by side with the others (repeatable)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="skip the search-parameter sweep and the tuning-margin analysis")
    parser.add_argument("--threads", type=int, default=1, help="FAISS and onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of Flat / index timing, alternating (the best round of each is kept)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(args.threads)
    flags = sorted(set(re.findall(r"\b(avx512\w*|avx2|avx_vnni|fma)\b", Path("/proc/cpuinfo").read_text())))
    results = {"threads": args.threads, "cpu_count": os.cpu_count(), "cpu_flags": flags,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_average_at_start": os.getloadavg(),
               "machine": platform.processor() or platform.machine(),
               "faiss": faiss.__version__, "k": 10, "recipe": args.recipe, "command": command_line(args)}

    vectors_dir, query_vectors, query_file, qrels_file = encode_real(args, out)
    results["dim"] = query_vectors.shape[1]
    half = len(query_vectors) // 2  # the first half measures (held-out), the second half tunes
    tuning_dir = out / "tuning-queries.vectors"
    with VectorWriter(tuning_dir, dim=query_vectors.shape[1], overwrite=True) as writer:
        writer.write(pa.array([f"q{i}" for i in range(half, len(query_vectors))]), query_vectors[half:])
        writer.publish({"normalize": True, "note": "second half of the benchmark's query vectors"})
    auto = IndexConfig(max_memory=args.max_memory, recall_margin=args.recall_margin)
    auto_q = dataclasses.replace(auto, tuning_vectors=str(tuning_dir))
    if not args.skip_real:
        results["real"] = bench_set("wordnet", vectors_dir, query_vectors, half, out,
                                    {"auto": auto, "auto-query-tuned": auto_q}, {}, args)
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
            configs[f"auto@{args.also_memory}-query-tuned"] = dataclasses.replace(auto_q, max_memory=args.also_memory)
        if args.large_configs:
            wanted = args.large_configs.split(",")
            configs = {label: config for label, config in configs.items() if label in wanted}
        for factory in args.route:
            configs[label_of(factory)] = dataclasses.replace(
                auto_q, factory=factory, ef_construction=args.ef_construction if "HNSW" in factory else None)
        prebuilt = dict(item.split("=", 1) for item in args.prebuilt)
        results["synthetic"] = bench_set("synthetic", synthetic, query_vectors, half, out, configs,
                                         {label: Path(path) for label, path in prebuilt.items()}, args)
        results["synthetic"]["recipe"] = open_vectors(synthetic).manifest["synthetic"]
    results["load_average_at_end"] = os.getloadavg()
    (out / "bench_index.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table(results))
    print(table(results))
    plot(results, out / "bench_index.png")
    log.info("wrote %s, %s and %s", out / "bench_index.json", out / "table.md", out / "bench_index.png")


if __name__ == "__main__":
    main()
