"""Encoding time for classify's frozen vectors: 4 poolings the old way (one encoder pass each) against
4 poolings x every layer from one pass of the all-layers export, side by side in one run.

    python scripts/bench_classify_layers.py --data ../shared/data/wordnet_cls_test.parquet \
        --threads 1 --rounds 2 --out bench_out/classify_layers.json

Each round runs, on the same texts: (a) "before": ``TextEncoder`` once per pooling (cls, mean, max,
pooler), as classify did; (b) the 4 poolings from one pass of the normal export (last layer);
(c) the 4 poolings x hidden states 0..L from one pass of the all-layers export (pooler at the last
layer only, as classify does). The rounds interleave (a), (b), (c) so a busy machine slows each
alike; the report gives every round's seconds and the median. Exports are made (or found cached)
before timing. Also checks that (c)'s last-layer vectors equal (a)'s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from embedpipe.encode.batching import BatchPlan  # noqa: E402
from embedpipe.encode.encoder import EncoderSpec, TextEncoder  # noqa: E402
from embedpipe.encode.layers import PoolingGridEncoder  # noqa: E402

POOLINGS = ("cls", "mean", "max", "pooler")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    texts = pq.read_table(args.data, columns=[args.text_column]).column(0).to_pylist()[:args.limit]
    plan = BatchPlan(threads=args.threads)
    separate = {p: TextEncoder.load(EncoderSpec(model=args.model, pooling=p), plan) for p in POOLINGS}
    last_only = PoolingGridEncoder.load(model=args.model, normalize=True, max_length=None, layers=[], plan=plan)
    layers = last_only.layers
    last_pairs = [(p, layers) for p in POOLINGS]
    everything = PoolingGridEncoder.load(model=args.model, normalize=True, max_length=None, layers=list(range(layers)),
                                       plan=plan)
    all_pairs = [(p, layer) for layer in range(layers + 1) for p in POOLINGS if p != "pooler" or layer == layers]
    timings = {"before: 4 poolings, 4 passes": [], "4 poolings, last layer, 1 pass": [],
               f"4 poolings x {layers + 1} hidden states ({len(all_pairs)} sets), 1 pass": []}
    names = list(timings)
    for round_ in range(args.rounds):
        started = time.perf_counter()
        before = {p: encoder.encode(texts) for p, encoder in separate.items()}
        timings[names[0]].append(time.perf_counter() - started)
        started = time.perf_counter()
        last_only.encode_many(texts, last_pairs)
        timings[names[1]].append(time.perf_counter() - started)
        started = time.perf_counter()
        after, _ = everything.encode_many(texts, all_pairs)
        timings[names[2]].append(time.perf_counter() - started)
        print(f"round {round_ + 1}: " + ", ".join(f"{k}: {v[-1]:.1f} s" for k, v in timings.items()), flush=True)
    gap = max(float(np.abs(after[(p, layers)] - before[p]).max()) for p in POOLINGS)
    result = {"texts": len(texts), "threads": args.threads, "rounds": args.rounds, "model_layers": layers,
              "seconds": {k: [round(s, 2) for s in v] for k, v in timings.items()},
              "median_seconds": {k: round(statistics.median(v), 2) for k, v in timings.items()},
              "median_texts_per_s": {k: round(len(texts) / statistics.median(v), 1) for k, v in timings.items()},
              "max_abs_difference_last_layer_vs_before": gap}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
