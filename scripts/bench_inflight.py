"""How many onnxruntime calls in flight per worker: encode speed by (threads, calls), fp32 and int8, one run.

    python scripts/bench_inflight.py ../shared/data/wordnet_ret_corpus.parquet --rows 3000
    python scripts/bench_inflight.py bench_out/long.parquet --rows 600 --calls 1,2,3

Every variant is one TextEncoder (one session, the intra-op threads encode/inflight.py gives it) in
this process, all loaded first, then timed round-robin over --repeats rounds on the same texts;
the median round is reported with each round's load average (/proc/loadavg, 1 min) beside it,
since other work on a shared machine slows some rounds. The vectors of every variant are compared
with those of one call in flight (they must be the same up to float rounding). Writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow.parquet as pq


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def round_robin(encoders: dict, texts: list[str], repeats: int) -> tuple[dict, dict]:
    """Time each encoder (name -> TextEncoder) on ``texts``, interleaved over ``repeats`` rounds ->
    (name -> [{"texts_per_second", "load"}] per round, name -> the vectors of its last round)."""
    rounds = {name: [] for name in encoders}
    vectors = {}
    for round_ in range(repeats):
        for name, encoder in encoders.items():
            load = load_average()
            start = time.perf_counter()
            vectors[name] = encoder.encode(texts)
            rounds[name].append({"texts_per_second": len(texts) / (time.perf_counter() - start), "load": load})
        print(f"round {round_ + 1}/{repeats} done", file=sys.stderr)
    return rounds, vectors


def against(rounds: list[dict], base: list[dict]) -> dict:
    """A variant's rounds against a base's, round by round (both ran at nearly the same load)."""
    rates = [r["texts_per_second"] for r in rounds]
    ratios = [r["texts_per_second"] / b["texts_per_second"] for r, b in zip(rounds, base)]
    return {"texts_per_second": statistics.median(rates), "ratio_median": statistics.median(ratios),
            "ratios": ratios, "rounds": rounds}


def ratio_cells(result: dict) -> str:
    """'texts/s | median ratio (each round) | load per round' table cells of an ``against`` result."""
    ratios = ", ".join(f"{x:.2f}" for x in result["ratios"])
    loads = ", ".join(f"{x['load']:.1f}" for x in result["rounds"])
    return f"{result['texts_per_second']:.1f} | {result['ratio_median']:.2f}x ({ratios}) | {loads}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--threads", default=str(os.cpu_count() or 1), help="comma list of cores per worker")
    parser.add_argument("--calls", default="1,2", help="comma list of calls in flight")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench_out/inflight")
    args = parser.parse_args()

    from embedpipe.encode.batching import BatchPlan
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder
    from embedpipe.encode.inflight import intra_op_threads
    from embedpipe.model.quantize import cpu_isa

    texts = pq.read_table(args.corpus, columns=["text"]).column(0).to_pylist()[:args.rows]
    encoders = {}
    for precision in args.precisions.split(","):
        spec = EncoderSpec(quantize="int8" if precision == "int8" else None)
        for threads in map(int, args.threads.split(",")):
            for calls in map(int, args.calls.split(",")):
                name = f"{precision} threads={threads} calls={calls}"
                encoder = TextEncoder.load(spec, BatchPlan(threads=threads, inflight=calls))
                encoder.encode(texts[:256])   # warm-up: onnxruntime plans its kernels on the first calls
                encoders[name] = (encoder, precision, threads, calls)
    rounds, vectors = round_robin({name: e[0] for name, e in encoders.items()}, texts, args.repeats)

    results = []
    for name, (_, precision, threads, calls) in encoders.items():
        base = f"{precision} threads={threads} calls={min(map(int, args.calls.split(',')))}"
        results.append({"variant": name, "precision": precision, "threads": threads, "calls": calls,
                        "intra_op_threads": intra_op_threads(threads, calls), **against(rounds[name], rounds[base]),
                        "max_abs_diff": float(abs(vectors[name] - vectors[base]).max())})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"corpus": args.corpus, "rows": len(texts), "cpus": os.cpu_count(), "isa": cpu_isa(),
              "repeats": args.repeats, "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print("| variant | intra-op threads | texts/s (median) | vs fewest calls, median of rounds (each round) "
          "| load avg per round | max abs diff |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['intra_op_threads']} | {ratio_cells(r)} | {r['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
