"""Benchmark compact vectors (issue 27): what each byte saved costs in retrieval quality, on a real set.

The corpus is encoded once to float32 with embedpipe's encoder (all-MiniLM-L6-v2, normalized); the other
precisions are made from those vectors by the codec every encode worker applies (encode/codec.py:
truncate, renormalize, quantize; int8 ranges learned from a spread sample of 10,000 of the corpus's own
vectors, as `encode --dtype int8` learns them) and written as vector directories, then indexed with
`build_index` as `embedpipe index` does. Queries are encoded once, the way `search` encodes them, and
truncated as each index's manifest records.

Per row: nDCG@10 and recall@10 on the qrels (BEIR/MTEB metrics), bytes per vector held in RAM at search and
read from disk to rescore, and queries/s (the first --timed-queries queries in one batch, FAISS on --threads;
every index timed in turn, round after round, so all see the same load; the best of --repeats rounds).
Writes bench_compact.json, table.md and bench_compact.png.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_compact.py --corpus ../shared/data/wordnet_ret_corpus.parquet \\
        --queries ../shared/data/wordnet_ret_queries.parquet --out bench/compact --threads 1
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
import pyarrow.parquet as pq  # noqa: E402

from embedpipe.encode import EncodeJob, encode_corpus  # noqa: E402
from embedpipe.encode.codec import VectorCodec, query_vectors, truncate  # noqa: E402
from embedpipe.encode.encoder import TextEncoder  # noqa: E402
from embedpipe.formats.codes import QUANTIZED, ranges_of, ranges_record  # noqa: E402
from embedpipe.formats.vectors import MANIFEST, VectorWriter, open_vectors  # noqa: E402
from embedpipe.index import IndexConfig, build_index, open_index  # noqa: E402
from embedpipe.retrieval.compare import plot_quality  # noqa: E402
from embedpipe.retrieval.metrics import retrieval_metrics  # noqa: E402
from embedpipe.retrieval.search import index_search  # noqa: E402

log = logging.getLogger("bench_compact")
CALIBRATION_ROWS = 10_000

# label, dtype, truncate_dim, factory, rescore_from (a label of another row's vectors, or None)
ROWS = [
    ("float32", "float32", None, "Flat", None),
    ("float16", "float16", None, "SQfp16", None),
    ("int8 + int8 rescore", "int8", None, "auto", None),
    ("int8, no rescore", "int8", None, "auto", "-"),
    ("binary, no rescore", "binary", None, "auto", "-"),
    ("binary + int8 rescore", "binary", None, "auto", "int8 + int8 rescore"),
    ("binary + float32 rescore", "binary", None, "auto", "float32"),
    ("float32 @128", "float32", 128, "Flat", None),
    ("int8 @128 + int8 rescore", "int8", 128, "auto", None),
    ("binary @128 + float32 rescore", "binary", 128, "auto", "float32 @128"),
]


def derived_vectors(floats_dir: Path, out: Path, dtype: str, truncate_dim: int | None) -> Path:
    """A vector directory of ``dtype`` / ``truncate_dim`` made from the float32 one by the encode codec."""
    if (out / MANIFEST).exists():
        return out
    source = open_vectors(floats_dir)
    ids, floats = source.read_all()
    kept = truncate(floats, truncate_dim, True)
    compact = None
    ranges = None
    if dtype in QUANTIZED:
        rows = np.linspace(0, len(kept) - 1, CALIBRATION_ROWS).astype(int)
        ranges = ranges_of(kept[rows])
        compact = {"precision": dtype, "truncate_dim": truncate_dim, "ranges": ranges_record(ranges),
                   "calibration": {"from": "corpus sample", "rows": CALIBRATION_ROWS}}
    elif dtype != "float32" or truncate_dim:
        compact = {"precision": dtype, "truncate_dim": truncate_dim}
    codes = VectorCodec(dtype, truncate_dim, True, ranges)(floats)
    manifest = {k: v for k, v in source.manifest.items() if k not in ("dim", "dtype", "rows", "shards", "compact")}
    if truncate_dim:
        manifest["encoder"] = {**manifest["encoder"], "truncate_dim": truncate_dim}
    if compact:
        manifest["compact"] = compact
    with VectorWriter(out, dim=kept.shape[1], dtype=dtype, overwrite=True) as writer:
        writer.write(ids, codes)
        writer.publish(manifest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True, help="parquet: id, text, doc_id (the relevant document)")
    parser.add_argument("--out", default="bench/compact")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rescore-multiplier", type=int, default=4)
    parser.add_argument("--timed-queries", type=int, default=500, help="queries per timed search (the first ones)")
    parser.add_argument("--reuse", action="store_true", help="keep index directories already built in --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faiss.omp_set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    floats_dir = out / "float32.vectors"
    if not (floats_dir / MANIFEST).exists():
        encode_corpus(EncodeJob(args.corpus, out=str(floats_dir), runner="local"))
    queries = pq.read_table(args.queries).to_pydict()
    qrels = {str(q): {str(d): 1} for q, d in zip(queries["id"], queries["doc_id"])}
    query_file = out / "queries.npy"
    if not query_file.exists():
        encoder = TextEncoder.from_manifest(open_vectors(floats_dir).manifest, query=True)
        np.save(query_file, encoder.encode(queries["text"]))
    query_floats = np.load(query_file)
    vector_dirs, results, timed = {}, [], []
    for label, dtype, dim, factory, rescore_from in ROWS:
        key = f"{dtype}-{dim or 'full'}"
        vector_dirs[label] = derived_vectors(floats_dir, out / f"{key}.vectors", dtype, dim)
        source = None if rescore_from in (None, "-") else str(vector_dirs[rescore_from])
        index_dir = out / f"{label.replace(' ', '_').replace('+', 'plus').replace('@', 'at')}.index"
        config = IndexConfig(factory=factory, rescore=rescore_from != "-", rescore_from=source,
                             rescore_multiplier=args.rescore_multiplier, max_memory="8GB")
        if args.reuse and (index_dir / "index.json").exists():
            info = json.loads((index_dir / "index.json").read_text())
        else:
            info = build_index(vector_dirs[label], index_dir, config, overwrite=True, threads=args.threads)
        index = open_index(index_dir, mmap=True)
        q = query_vectors(info["manifest"], query_floats)
        timed.append((index, q[:args.timed_queries]))
        scores, hits = index_search(index, q, 10)
        run = {str(qid): {str(d): float(s) for d, s in zip(h, sc)} for qid, sc, h in zip(queries["id"], scores, hits)}
        metrics = retrieval_metrics(run, qrels, [10])
        rescore = (info.get("compact") or {}).get("exact_store") or {}
        row = {"label": label, "dtype": dtype, "dim": info["dim"], "factory": info["factory"],
               "ndcg_at_10": round(metrics["ndcg_at_10"], 4), "recall_at_10": round(metrics["recall_at_10"], 4),
               "ram_bytes_per_vector": round(info["memory_bytes"] / info["n"], 1),
               "disk_bytes_per_vector": round(rescore.get("bytes", 0) / info["n"], 1),
               "rescore_from": rescore_from if rescore else None, "rescored": bool(rescore),
               "build_loadavg": Path("/proc/loadavg").read_text().split()[0]}
        results.append(row)
        log.info("%s", json.dumps(row))
    # queries/s: every index timed in turn, round after round (side by side under the same load), best round
    best = [float("inf")] * len(timed)
    loads = []
    for _ in range(args.repeats):
        for i, (index, q) in enumerate(timed):
            started = time.perf_counter()
            index_search(index, q, 10)
            best[i] = min(best[i], time.perf_counter() - started)
        loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
    for row, seconds, (_, q) in zip(results, best, timed):
        row["queries_per_second"] = round(len(q) / seconds, 1)
        row["loadavg"] = f"{min(loads):.1f}-{max(loads):.1f}"
    base = results[0]
    for row in results:
        row["ndcg_vs_float32"] = round(row["ndcg_at_10"] / base["ndcg_at_10"], 4)
        row["ram_reduction"] = round(base["ram_bytes_per_vector"] / row["ram_bytes_per_vector"], 1)
    report = {"rows": results, "threads": args.threads, "rescore_multiplier": args.rescore_multiplier,
              "machine": platform.processor() or platform.machine(), "cpu_flags": _isa()}
    (out / "bench_compact.json").write_text(json.dumps(report, indent=2))
    lines = ["| vectors | index | nDCG@10 | vs float32 | recall@10 | RAM B/vector | RAM x less | disk B/vector "
             "(rescore) | queries/s | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['factory']} | {r['ndcg_at_10']:.4f} | {r['ndcg_vs_float32']:.3f} | "
                     f"{r['recall_at_10']:.4f} | {r['ram_bytes_per_vector']:.0f} | {r['ram_reduction']}x | "
                     f"{r['disk_bytes_per_vector']:.0f} | {r['queries_per_second']:.0f} | {r['loadavg']} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_quality(results, out / "bench_compact.png")


def _isa() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0] if Path("/proc/cpuinfo").exists() else ""
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {f}" in flags)


if __name__ == "__main__":
    main()
