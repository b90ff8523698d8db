"""Chunking vs truncation on long documents: retrieval quality and encode throughput, side by side.

    python scripts/make_long_documents.py --out bench_out/stdlib_docs
    python scripts/bench_chunking.py --data bench_out/stdlib_docs --out bench_out/chunking

For each configuration (truncation at the model's 256 tokens; --chunks windows and overlaps) the
corpus is encoded in this process (runner local, --threads), indexed exactly (Flat) and evaluated
(nDCG@10, Recall@10, MRR@10) by document with every aggregation (best, sum2, sum3). Throughput is
the tokens the model was fed (special and prompt tokens included, each chunk once) per second of
encoding; the encodes run --rounds times, interleaved, and the median is kept, with the load
average read at each. Writes OUT/results.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="make_long_documents.py's output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunks", default="256:32,128:16", help="WINDOW:OVERLAP pairs, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = str(args.data / "corpus.parquet")
    table = pq.read_table(corpus)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    configs = {"truncate": (None, 0)}
    for pair in args.chunks.split(","):
        window, overlap = map(int, pair.split(":"))
        configs[f"chunk{window}/{overlap}"] = (window, overlap)
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = TextEncoder.load(EncoderSpec())
    timings: dict[str, list] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (window, overlap) in configs.items():
            out = args.out / f"{name.replace('/', '_')}.vectors"
            load = load_average()
            manifest = encode_corpus(EncodeJob(corpus, out=str(out), runner="local", threads=args.threads,
                                               chunk_tokens=window, chunk_overlap=overlap, overwrite=True)).manifest
            timings[name].append((manifest["seconds"], load))
    results = {}
    for name, (window, overlap) in configs.items():
        vectors = args.out / f"{name.replace('/', '_')}.vectors"
        index = args.out / f"{name.replace('/', '_')}.index"
        shutil.rmtree(index, ignore_errors=True)
        build_index(vectors, index, IndexConfig(factory="Flat"), overwrite=True)
        tokens = model_tokens(vectors, texts, encoder)
        seconds = statistics.median(s for s, _ in timings[name])
        scores = {}
        for doc_score in (["best", "sum2", "sum3"] if window else ["best"]):
            report = evaluate(index, args.data / "queries.parquet", args.data / "qrels.parquet", [10], exact=False,
                              doc_score=doc_score)
            scores[doc_score] = report["index"]
        results[name] = {"chunk_tokens": window, "chunk_overlap": overlap, "rows": open_vectors(vectors).rows,
                         "model_tokens": tokens, "seconds": [s for s, _ in timings[name]],
                         "load_average": [load for _, load in timings[name]],
                         "tokens_per_second": round(tokens / seconds, 1), "metrics": scores}
    base = results["truncate"]["tokens_per_second"]
    print(f"{'config':<14}{'rows':>6}{'tokens':>9}{'tok/s':>9}{'ratio':>7}  {'load':<16}"
          f"{'agg':<6}{'nDCG@10':>9}{'R@10':>7}{'MRR@10':>8}")
    for name, r in results.items():
        for i, (agg, m) in enumerate(r["metrics"].items()):
            head = (f"{name:<14}{r['rows']:>6}{r['model_tokens']:>9}{r['tokens_per_second']:>9.0f}"
                    f"{r['tokens_per_second'] / base:>7.2f}  {','.join(r['load_average']):<16}") if not i else " " * 61
            print(f"{head}{agg:<6}{m['ndcg_at_10']:>9.4f}{m['recall_at_10']:>7.4f}{m['mrr_at_10']:>8.4f}")
    about = json.loads((args.data / "about.json").read_text()) if (args.data / "about.json").exists() else {}
    (args.out / "results.json").write_text(json.dumps({"data": about, "threads": args.threads,
                                                       "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
