"""Chunking vs truncation on long documents: retrieval quality and encode throughput, side by side.

    python scripts/make_long_documents.py --out bench_out/stdlib_docs
    python scripts/bench_chunking.py --data bench_out/stdlib_docs --out bench_out/chunking

Quality: for each configuration (truncation at the model's 256 tokens; --chunks windows and
overlaps) the corpus is encoded in this process (runner local, --threads), indexed exactly (Flat)
and evaluated (nDCG@10, Recall@10, MRR@10) by document with every aggregation (best, sum2, sum3).

Throughput: the tokens the model was fed (special tokens included, each chunk once) per second of
`encode` (chunking included), truncation over every document against chunking over the first
documents that make about as many tokens, so the runs last alike; the runs are interleaved --rounds
times, so each ratio compares runs under the same load (the load average is read at each), and the
median ratio is kept. Writes OUT/results.json (quality.json / throughput.json with --no-throughput /
--no-quality).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.encode.job import EncodeJob, encode_corpus
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, build_index
from embedpipe.retrieval.evaluate import evaluate


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def model_tokens(vectors_dir: Path, texts: dict[str, str], encoder: TextEncoder) -> int:
    """Tokens the model was fed for the rows of a vector directory (each chunk's span, else the text)."""
    vectors = open_vectors(vectors_dir)
    spans = []
    for shard in vectors.manifest["shards"]:
        table = pq.read_table(vectors_dir / shard["file"])
        if "doc_id" in table.column_names:
            columns = (table.column(c).to_pylist() for c in ("doc_id", "start", "end"))
            spans += [texts[d][a:b] for d, a, b in zip(*columns)]
        else:
            spans += [texts[i] for i in table.column("id").to_pylist()]
    return sum(len(ids) for ids in encoder.tokenize(spans))


def encode_seconds(corpus: str, out: Path, threads: int, window: int | None, overlap: int) -> tuple[float, str]:
    """(seconds the encode took, the load average when it started): a fresh output each time."""
    load = load_average()
    manifest = encode_corpus(EncodeJob(corpus, out=str(out), runner="local", threads=threads, chunk_tokens=window,
                                       chunk_overlap=overlap, overwrite=True)).manifest
    return manifest["seconds"], load


def quality(args, configs: dict, texts: dict[str, str], encoder: TextEncoder) -> dict:
    """Each configuration encoded once over the whole corpus, indexed (Flat) and evaluated by document."""
    corpus, results = str(args.data / "corpus.parquet"), {}
    for name, (window, overlap) in configs.items():
        vectors = args.out / f"{name.replace('/', '_')}.vectors"
        index = args.out / f"{name.replace('/', '_')}.index"
        seconds, load = encode_seconds(corpus, vectors, args.threads, window, overlap)
        shutil.rmtree(index, ignore_errors=True)
        build_index(vectors, index, IndexConfig(factory="Flat"), overwrite=True)
        scores = {}
        for doc_score in (["best", "sum2", "sum3"] if window else ["best"]):
            report = evaluate(index, args.data / "queries.parquet", args.data / "qrels.parquet", [10], exact=False,
                              doc_score=doc_score)
            scores[doc_score] = report["index"]
        results[name] = {"chunk_tokens": window, "chunk_overlap": overlap, "rows": open_vectors(vectors).rows,
                         "model_tokens": model_tokens(vectors, texts, encoder), "seconds": seconds,
                         "load_average": load, "metrics": scores}
        print(f"quality {name:<12} rows {results[name]['rows']:>5}  " + "  ".join(
            f"{agg}: nDCG@10 {v['ndcg_at_10']:.4f} R@10 {v['recall_at_10']:.4f} MRR@10 {v['mrr_at_10']:.4f}"
            for agg, v in scores.items()), flush=True)
    return results


def throughput(args, configs: dict, texts: dict[str, str], encoder: TextEncoder) -> dict:
    """Tokens/s of truncation over every document against chunking over the first documents that make
    about as many model tokens, the runs interleaved --rounds times (the same load for both)."""
    corpus = str(args.data / "corpus.parquet")
    truncated = sum(min(len(ids), encoder.max_length) for ids in encoder.tokenize(list(texts.values())))
    subset, made = {}, 0
    for doc, text in texts.items():        # chunked tokens ~ the text's own; stop once they pass truncation's
        if made >= truncated:
            break
        subset[doc] = text
        made += len(encoder.cut.full.encode(text).ids)   # untruncated
    small = args.out / "throughput_subset.parquet"
    pq.write_table(pa.table({"id": list(subset), "text": list(subset.values())}), small)
    runs: dict[str, list] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (window, overlap) in configs.items():
            out = args.out / f"throughput_{name.replace('/', '_')}.vectors"
            seconds, load = encode_seconds(corpus if window is None else str(small), out, args.threads, window, overlap)
            tokens = model_tokens(out, texts, encoder)
            runs[name].append({"tokens": tokens, "seconds": seconds, "tokens_per_second": round(tokens / seconds, 1),
                               "load_average": load})
            print(f"throughput {name:<12} {tokens:>7} tokens {seconds:>7.1f} s {tokens / seconds:>7.0f} tok/s "
                  f"load {load}", flush=True)
    base = [r["tokens_per_second"] for r in runs["truncate"]]
    return {name: {"runs": r, "median_ratio_to_truncate": round(statistics.median(
                x["tokens_per_second"] / b for x, b in zip(r, base)), 3)} for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="make_long_documents.py's output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunks", default="256:32,128:16", help="WINDOW:OVERLAP pairs, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--no-quality", action="store_true", help="throughput only")
    parser.add_argument("--no-throughput", action="store_true", help="retrieval quality only")
    args = parser.parse_args()
    table = pq.read_table(args.data / "corpus.parquet")
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    configs = {"truncate": (None, 0)}
    for pair in args.chunks.split(","):
        window, overlap = map(int, pair.split(":"))
        configs[f"chunk{window}/{overlap}"] = (window, overlap)
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = TextEncoder.load(EncoderSpec())
    about = json.loads((args.data / "about.json").read_text()) if (args.data / "about.json").exists() else {}
    results = {"data": about, "threads": args.threads, "cpu": platform.processor() or platform.machine()}
    if not args.no_quality:
        results["quality"] = quality(args, configs, texts, encoder)
    if not args.no_throughput:
        results["throughput"] = throughput(args, configs, texts, encoder)
        for name, r in results["throughput"].items():
            print(f"throughput {name:<12} median tokens/s ratio to truncate {r['median_ratio_to_truncate']:.3f}")
    name = "results.json" if not (args.no_quality or args.no_throughput) else \
        ("throughput.json" if args.no_quality else "quality.json")
    (args.out / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
