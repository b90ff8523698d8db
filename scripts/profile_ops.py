"""Where an encoder graph's time goes, by operator type: onnxruntime's own profiler over real texts.

    python scripts/profile_ops.py bench_out/long.parquet --rows 300                 # fp32 and int8 exports
    python scripts/profile_ops.py bench_out/long.parquet --graph some/model.onnx    # any graph of the same model
    python scripts/profile_ops.py bench_out/long.parquet --fusions    # and bench_quantize.py --fusions' graphs

Each graph runs in one onnxruntime session as embedpipe's encoder runs it (one intra-op thread by
default: the per-call view of two calls in flight on 2 cores), over the same length-sorted batches
as `embedpipe encode`, after a warm-up; the profile's node events are summed by operator type.
Prints one table (share of each graph's node time by operator type) and writes results.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow.parquet as pq


def profile(encoder, onnx_path: Path, texts: list[str], threads: int) -> dict[str, float]:
    """Microseconds spent per operator type by ``onnx_path`` encoding ``texts`` with ``encoder``'s batching."""
    import onnxruntime as ort

    options = encoder.session_options()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "embedpipe-ops")
    encoder.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    encoder.encode(texts[:64])   # warm-up, profiled too: dropped below by restarting the sum
    trace = Path(encoder.session.end_profiling())
    trace.unlink()
    encoder.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    encoder.encode(texts)
    trace = Path(encoder.session.end_profiling())
    totals: dict[str, float] = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--graph", action="append", default=[], help="profile this graph (repeatable) "
                        "[default: the bundled model's fp32 and int8 exports]")
    parser.add_argument("--fusions", action="store_true",
                        help="also the int8 graphs `bench_quantize.py --fusions` builds (kept in --out)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default="bench_out/ops")
    args = parser.parse_args()

    from embedpipe.encode.batching import BatchPlan
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare

    texts = pq.read_table(args.corpus, columns=["text"]).column(0).to_pylist()[:args.rows]
    exported, max_length = prepare(EncoderSpec(model=args.model))
    graphs = {Path(g).name: Path(g) for g in args.graph} or {
        "fp32": exported.onnx_path, "int8": prepare(EncoderSpec(model=args.model, quantize="int8"))[0].onnx_path}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.fusions:
        import onnx

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_quantize import build_fusions

        from embedpipe.model.quantize import split_matmuls

        config = json.loads((exported.path / "config.json").read_text())
        _, activation_only = split_matmuls(onnx.load(str(exported.onnx_path), load_external_data=False).graph)
        graphs.update(build_fusions(exported.onnx_path, out, activation_only, config["num_attention_heads"],
                                    config["hidden_size"]))
    encoder = TextEncoder(exported.path, "mean", True, max_length, BatchPlan(threads=args.threads, inflight=1))
    results = {}
    for name, path in graphs.items():
        print(f"profiling {name} ...", file=sys.stderr)
        results[name] = profile(encoder, path, texts, args.threads)
    (out / "results.json").write_text(json.dumps({"corpus": args.corpus, "rows": len(texts),
                                                  "threads": args.threads, "microseconds": results}, indent=2))
    ops = sorted({op for totals in results.values() for op in totals},
                 key=lambda op: -max(t.get(op, 0) for t in results.values()))
    names = list(results)
    print("| operator | " + " | ".join(f"{n}: ms (share)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    print("| all | " + " | ".join(f"{sum(results[n].values()) / 1e3:.0f} (100%)" for n in names) + " |")
    for op in ops:
        cells = []
        for n in names:
            us, total = results[n].get(op, 0), sum(results[n].values())
            cells.append(f"{us / 1e3:.0f} ({100 * us / total:.1f}%)" if us else "-")
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
