"""Benchmark ``search --corpus`` over an index of chunks with and without spans.arrow (issue 28's follow-up):

    before   an index written before spans.arrow: the hits' spans are read from the id, start and end
             columns of every shard of the vector directory, on every search
    after    spans.arrow: only the hits' rows are read, memory-mapped from the index directory

A synthetic corpus of --docs documents of random words is encoded in chunks of 16 tokens with a tiny
random BERT (embedpipe.testing.models: no download; the encoder's cost is not what is measured), then
indexed Flat. Each variant runs in a fresh process what ``search INDEX QUERY --corpus CORPUS`` runs
(open the index memory-mapped, encode the query, search, read the hits' texts from the corpus and cut
their spans), --searches times, one query each; it reports the seconds of the first search and the
median of the rest, the seconds spent finding the spans (the part spans.arrow changes; the corpus is
streamed whole on each search either way), and peak RSS (VmHWM) after the imports and at the end.

    python scripts/bench_index_spans.py --docs 20000 --out bench_out/spans
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

VARIANTS = ("before", "after")
WORDS = ("the a of to and in is was for on with by at from it this that be are not or cat dog bird fish tree "
         "house car road river city water fire sun moon star book word red green blue old new big small").split()


def make_index(out: Path, docs: int) -> Path:
    """corpus.parquet, corpus.vectors (chunks of 16 tokens) and flat.index under ``out``; kept if there."""
    from embedpipe.encode import EncodeJob, encode_corpus
    from embedpipe.encode.encoder import EncoderSpec
    from embedpipe.index import IndexConfig, build_index
    from embedpipe.testing.models import LETTERS, save_tiny_bert

    index_dir = out / "flat.index"
    if (index_dir / "index.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    model = save_tiny_bert(out / "model", WORDS, LETTERS + ",.!?'-")
    rng = np.random.default_rng(0)
    words = np.array(WORDS, dtype=object)
    texts = [" ".join(rng.choice(words, 90)) + "." for _ in range(docs)]
    pq.write_table(pa.table({"id": [f"doc-{i:06d}" for i in range(docs)], "text": texts}), out / "corpus.parquet")
    encode_corpus(EncodeJob(str(out / "corpus.parquet"), out=str(out / "corpus.vectors"), runner="local", threads=2,
                            chunk_tokens=16, chunk_overlap=0, rows_per_shard=2_000, spec=EncoderSpec(model=str(model))))
    build_index(out / "corpus.vectors", index_dir, IndexConfig(factory="Flat"))
    return out


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(out: str, searches: int) -> dict:
    """``search --corpus``'s work, ``searches`` times, in this (fresh) process."""
    from embedpipe.formats.index_spans import IndexSpans
    from embedpipe.index import open_index
    from embedpipe.retrieval import documents
    from embedpipe.retrieval.search import corpus_columns, corpus_texts, query_encoder, search_texts

    at_start = peak_rss()
    spans_s = []

    def timed(function):
        def run(*args):
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                spans_s[-1] += time.perf_counter() - started
        return run
    documents.chunk_spans = timed(documents.chunk_spans)       # before: every shard's id, start, end
    IndexSpans.take_each = timed(IndexSpans.take_each)         # after: the fetched rows of spans.arrow
    corpus, seconds, shown = Path(out) / "corpus.parquet", [], 0
    for i in range(searches):
        spans_s.append(0.0)
        started = time.perf_counter()
        index = open_index(Path(out) / "flat.index", mmap=True)
        hits = search_texts(index, [f"word {i} of a query"], 10, query_encoder(index))[0]
        columns = corpus_columns(index)
        documents.show_texts(index, hits, lambda ids, columns=columns: corpus_texts(corpus, ids, **columns))
        seconds.append(time.perf_counter() - started)
        shown += sum(h.span is not None for h in hits)
    return {"first_s": seconds[0], "median_s": statistics.median(seconds[1:]), "spans_first_s": spans_s[0],
            "spans_median_s": statistics.median(spans_s[1:]), "hits_with_span": shown,
            "peak_rss_at_start": at_start, "peak_rss": peak_rss()}


def with_layout(index_dir: Path, spans: bool) -> None:
    """index.json naming spans.arrow or not (as an index written before it: the file then goes unread)."""
    info = json.loads((index_dir / "index.json").read_text())
    info.pop("spans_file", None)
    (index_dir / "index.json").write_text(json.dumps({**info, **({"spans_file": "spans.arrow"} if spans else {})}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench_out/spans"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    out = make_index(args.out, args.docs)
    index_dir = out / "flat.index"
    chunks = json.loads((index_dir / "index.json").read_text())["n"]
    shards = len(json.loads((out / "corpus.vectors" / "manifest.json").read_text())["shards"])
    results = []
    for variant in VARIANTS:
        with_layout(index_dir, spans=variant == "after")
        load = Path("/proc/loadavg").read_text().split()[0]
        run = subprocess.run([sys.executable, __file__, "--child", str(out), str(args.searches)], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
        figures = {"variant": variant, **json.loads(run.stdout.splitlines()[-1]), "load_before": float(load),
                   "load_after": float(Path("/proc/loadavg").read_text().split()[0])}
        results.append(figures)
        print(f"{chunks:,} chunks in {shards} shards  {variant:6}  search --corpus: first {figures['first_s']:.3f} s, "
              f"median {figures['median_s']:.3f} s; finding the spans: first {figures['spans_first_s']:.4f} s, "
              f"median {figures['spans_median_s']:.4f} s; peak RSS {figures['peak_rss_at_start'] / 2**20:.0f} -> "
              f"{figures['peak_rss'] / 2**20:.0f} MiB  (load {load} -> {figures['load_after']})", flush=True)
    with_layout(index_dir, spans=True)
    report = {"machine": platform.processor() or platform.machine(), "chunks": chunks, "shards": shards,
              "spans_arrow_bytes": (index_dir / "spans.arrow").stat().st_size, "results": results}
    (out / "spans_bench.json").write_text(json.dumps(report, indent=1))
    print(f"spans.arrow: {report['spans_arrow_bytes']:,} bytes")


if __name__ == "__main__":
    main()
