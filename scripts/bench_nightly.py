"""The nightly run, measured: a corpus grows by 10%, the same spec is rerun; how much of a full run
does the incremental rerun cost, and does the index find the new rows?

    python scripts/bench_nightly.py ../shared/data/wordnet_ret_corpus.parquet --rows 20000 --out bench_out/nightly

Day 1: the first 90% of ROWS in corpus/day1.parquet, `embedpipe run` (encode -> index).
Day 2: the other 10% added as corpus/day2.parquet, the same spec rerun (encode only new ids, append
to the index). Then a full run over the grown corpus into a fresh output directory, for comparison.
Prints one JSON object: seconds per stage of each run, rows encoded, the ratio incremental / full,
and the share of new rows whose own text finds them at rank 1 in the appended index.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq

from embedpipe.formats.vectors import open_vectors
from embedpipe.index import open_index
from embedpipe.pipeline import load_spec, run_pipeline
from embedpipe.retrieval import search_texts

SPEC = """
    encode:
      corpus: corpus/
      runner: {runner}
      rows_per_shard: 5000
    index:
      factory: auto
      append: true
"""


def timed_run(spec_path: Path, output_dir: Path) -> dict:
    started = time.perf_counter()
    results = run_pipeline(load_spec(spec_path, output_dir=str(output_dir)))
    return {"seconds": round(time.perf_counter() - started, 2),
            "stages": {r.stage: {"action": r.action, "seconds": r.seconds, "detail": r.detail} for r in results}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="a parquet corpus with id and text (e.g. wordnet_ret_corpus.parquet)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runner", choices=["local", "ray"], default="local")
    parser.add_argument("--out", default="bench_out/nightly")
    args = parser.parse_args()

    root = Path(args.out).resolve()
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty; give a new --out")
    (root / "corpus").mkdir(parents=True)
    table = pq.read_table(args.corpus, columns=["id", "text"]).slice(0, args.rows)
    first = int(table.num_rows * 0.9)
    pq.write_table(table.slice(0, first), root / "corpus" / "day1.parquet")
    spec = root / "nightly.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(runner=args.runner)))

    day1 = timed_run(spec, root / "out")
    pq.write_table(table.slice(first), root / "corpus" / "day2.parquet")
    day2 = timed_run(spec, root / "out")
    full = timed_run(spec, root / "full")

    manifest = open_vectors(root / "out" / "vectors").manifest
    index = open_index(root / "out" / "index")
    new = table.slice(first)
    hits = search_texts(index, new.column("text").to_pylist(), k=1)
    found = sum(h[0].id == i for h, i in zip(hits, new.column("id").to_pylist()) if h)
    print(json.dumps({
        "rows": table.num_rows, "new_rows": new.num_rows, "runner": args.runner,
        "day1": day1, "day2_incremental": day2, "full_rebuild_of_grown_corpus": full,
        "encoded_rows_day2": manifest["last_run"]["encoded_rows"],
        "index": {"factory": index.info["factory"], "n": index.info["n"], "appends": index.info.get("appends")},
        "incremental_over_full_seconds": round(day2["seconds"] / full["seconds"], 3),
        "new_rows_found_at_rank_1": round(found / new.num_rows, 4),
    }, indent=2))


if __name__ == "__main__":
    main()
