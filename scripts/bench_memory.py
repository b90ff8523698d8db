"""Peak memory of `embedpipe encode --runner local` as the corpus grows: it should stay flat.

    python scripts/bench_memory.py --corpus ../shared/data/wordnet_ret_corpus.parquet --sizes 10000,80000

Each size runs in a fresh process (its own peak RSS), on the first N rows of the corpus (repeated
when N is larger), with --max-length 16 to keep the run short: memory does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CHILD = """
import json, resource, sys, time
from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encoder import EncoderSpec
start = time.perf_counter()
result = encode_corpus(EncodeJob(sys.argv[1], out=sys.argv[2], runner="local", spec=EncoderSpec(max_length=16),
                                 rows_per_shard=20_000))
print(json.dumps({"rows": result.manifest["rows"], "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def corpus_of(source: pa.Table, rows: int, path: Path) -> None:
    repeats = -(-rows // source.num_rows)
    table = pa.concat_tables([source] * repeats).slice(0, rows)
    table = table.set_column(0, "id", pa.array([f"d{i}" for i in range(rows)]))
    pq.write_table(table, path, row_group_size=10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--sizes", default="10000,80000")
    parser.add_argument("--out", default="bench_out/memory")
    args = parser.parse_args()
    source = pq.read_table(args.corpus, columns=["id", "text"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in map(int, args.sizes.split(",")):
            corpus = Path(tmp) / f"c{rows}.parquet"
            corpus_of(source, rows, corpus)
            done = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(Path(tmp) / f"v{rows}")],
                                  capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(results[-1], file=sys.stderr)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['rows']:>9,} rows: peak RSS {r['peak_rss_mb']:.0f} MB, {r['rows'] / r['seconds']:.0f} rows/s")


if __name__ == "__main__":
    main()
