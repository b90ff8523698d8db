"""Peak memory of `encode` as the corpus grows: it should stay flat (within 10% from 100k to 1M rows).

    python scripts/bench_memory.py                                    # tiny random BERT, 100k and 1M rows
    python scripts/bench_memory.py --model minilm --sizes 20000,100000 --max-length 16
    python scripts/bench_memory.py --corpus ../shared/data/wordnet_ret_corpus.parquet --sizes 100000,1000000

Each size runs in a fresh process (its own peak RSS, from getrusage) over a generated corpus of N
rows (texts drawn from a word list, or the rows of --corpus repeated, with fresh unique ids),
written in row groups of 10k rows. `--model tiny` (the default) builds a 2-layer, 32-wide BERT
with random weights: 1M rows through all-MiniLM-L6-v2 would take hours on 2 cores, and what is
measured here is what grows with the corpus (reading, id checks, writing), not the model's own
size, which is the same at every N. Results go to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.testing.models import save_tiny_bert

WORDS = ("the a an of to and in is was for on with as by at from it this that be are not or cat dog bird fish "
         "tree house car road river city water fire sun moon star book word run walk eat drink read write speak "
         "sing make take give find small large red green blue old new good bad fast slow").split()

CHILD = """
import json, resource, sys, time
from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
corpus, out, model, max_length, runner = sys.argv[1:6]
start = time.perf_counter()
spec = EncoderSpec(model=None if model == "minilm" else model,
                   max_length=int(max_length) if max_length != "0" else None)
result = encode_corpus(EncodeJob(corpus, out=out, runner=runner, spec=spec, rows_per_shard=100_000))
m = result.manifest
print(json.dumps({"rows": m["rows"], "encoded_rows": m["last_run"]["encoded_rows"], "dim": m["dim"],
                  "shards": len(m["shards"]), "seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def write_corpus(rows: int, path: Path, source: list[str] | None, group: int = 10_000) -> None:
    """N rows of (id, text), streamed to parquet one row group at a time."""
    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            if source:
                texts = [source[(start + i) % len(source)] for i in range(n)]
            else:
                lengths = rng.integers(4, 24, size=n)
                texts = [" ".join(words[rng.integers(0, len(words), size=k)]) for k in lengths]
            ids = [f"d{i}" for i in range(start, start + n)]
            writer.write_table(pa.table({"id": ids, "text": texts}, schema=schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (a random BERT built here), 'minilm' (the bundled "
                                                        "all-MiniLM-L6-v2) or a model directory [default: tiny]")
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes in rows [default: 100000,1000000]")
    parser.add_argument("--corpus", default=None, help="take texts from this parquet's text column (repeated)")
    parser.add_argument("--max-length", type=int, default=0, help="tokens per text; 0 = the model's limit")
    parser.add_argument("--runner", default="local", choices=["local", "ray"])
    parser.add_argument("--out", default="bench_out/memory")
    args = parser.parse_args()
    source = pq.read_table(args.corpus, columns=["text"]).column("text").to_pylist() if args.corpus else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save_tiny_bert(Path(tmp) / "tiny-bert", WORDS)) if args.model == "tiny" else args.model
        from embedpipe.encode.encoder import EncoderSpec, prepare

        prepare(EncoderSpec(model=None if model == "minilm" else model))  # export once, outside the measured runs
        for rows in map(int, args.sizes.split(",")):
            corpus = Path(tmp) / f"c{rows}.parquet"
            write_corpus(rows, corpus, source)
            done = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(Path(tmp) / f"v{rows}"), model,
                                   str(args.max_length), args.runner], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"encode of {rows} rows failed:\n{done.stderr[-2000:]}")
            results.append({"model": args.model, "runner": args.runner,
                            **json.loads(done.stdout.strip().splitlines()[-1])})
            print(results[-1], file=sys.stderr)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    summary = {"results": results,
               "peak_rss_ratio_largest_to_smallest": round(results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"], 3)}
    (Path(args.out) / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"| rows | peak RSS | seconds | rows/s |  (model: {args.model}, runner: {args.runner})")
    print("|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']:,} | {r['peak_rss_mb']:.0f} MB | {r['seconds']:.0f} | {r['rows'] / r['seconds']:,.0f} |")
    print(f"peak RSS ratio, {results[-1]['rows']:,} vs {results[0]['rows']:,} rows: "
          f"{summary['peak_rss_ratio_largest_to_smallest']:.3f}")


if __name__ == "__main__":
    main()
