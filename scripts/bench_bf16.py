"""Does bf16 beat fp32 on this CPU at cosine >= 0.999? onnxruntime fp32 against torch bf16, one run.

    python scripts/bench_bf16.py bench_out/long.parquet --rows 600
    python scripts/bench_bf16.py ../shared/data/wordnet_ret_corpus.parquet --rows 2000

onnxruntime's CPU execution provider has no bfloat16 MatMul on x86 (only ARM's fastmath option), so
the bf16 candidate is torch: the bundled model in transformers, cast to bfloat16, whose Linear layers
oneDNN runs on AMX or avx512_bf16 where the CPU has them. Every variant encodes the same texts with
embedpipe's tokenization, batches and pooling (only the graph that makes the token states differs),
in this process, round-robin over --repeats rounds; the median is reported with the load average
beside each round, and the cosine of every vector to embedpipe's fp32 one. Writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow.parquet as pq

BF16_FLOOR = 0.999   # the mean cosine to fp32 a bf16 path must keep to be worth offering


def torch_variant(encoder, model_dir: str, dtype, threads: int):
    """``encoder`` with its onnxruntime call replaced by the transformers model in ``dtype``."""
    import torch
    from transformers import AutoModel

    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).eval()

    def run(feeds):
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in feeds.items() if k in ("input_ids", "attention_mask",
                                                                                 "token_type_ids")}
            hidden = model(**inputs).last_hidden_state.float().numpy()
        return encoder._vectors(encoder.pooling, hidden, feeds["attention_mask"])

    encoder._run = run
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128, help="rows per call, every variant alike")
    parser.add_argument("--max-padding", type=float, default=0.0,
                        help="BatchPlan.max_padding, every variant alike: 0 = one token length per call (embedpipe's "
                             "default: many calls of distinct shapes, which torch pays for per shape); 1 = padded "
                             "batches of --batch-size, as sentence-transformers runs torch")
    parser.add_argument("--out", default="bench_out/bf16")
    args = parser.parse_args()

    import torch

    from embedpipe.encode.batching import BatchPlan
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare
    from embedpipe.model.quantize import cpu_isa

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inflight import against, ratio_cells, round_robin  # the same interleaved timing

    texts = pq.read_table(args.corpus, columns=["text"]).column(0).to_pylist()[:args.rows]
    exported, max_length = prepare(EncoderSpec())
    model_dir = str(exported.info["model_path"])

    int8, _ = prepare(EncoderSpec(quantize="int8"))

    def fresh(inflight=None, export=exported):
        return TextEncoder(export.path, "mean", True, max_length, BatchPlan(threads=args.threads, inflight=inflight,
                                                                          batch_size=args.batch_size,
                                                                          max_padding=args.max_padding))

    encoders = {"onnxruntime fp32 (embedpipe)": fresh(),
                "onnxruntime int8 (embedpipe --quantize int8)": fresh(export=int8),
                "torch fp32": torch_variant(fresh(1), model_dir, torch.float32, args.threads),
                "torch bf16": torch_variant(fresh(1), model_dir, torch.bfloat16, args.threads)}
    for encoder in encoders.values():
        encoder.encode(texts[:128])   # warm-up (oneDNN and onnxruntime plan kernels on the first calls)
    rounds, vectors = round_robin(encoders, texts, args.repeats)
    reference_name = next(iter(encoders))
    reference = vectors[reference_name]
    results = []
    for name in encoders:
        cosines = (vectors[name] * reference).sum(1)
        results.append({"variant": name, **against(rounds[name], rounds[reference_name]),
                        "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean())})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith(("amx", "avx512_bf16"))})
    (out / "results.json").write_text(json.dumps({"corpus": args.corpus, "rows": len(texts), "isa": cpu_isa(),
                                                  "bf16_flags": flags, "threads": args.threads,
                                                  "results": results}, indent=2))
    print(f"bf16 flags: {' '.join(flags) or 'none'}; floor: mean cosine >= {BF16_FLOOR}")
    print("| variant | texts/s (median) | vs embedpipe fp32, median of rounds (each) | load avg per round "
          "| cosine min / mean |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {ratio_cells(r)} | {r['cosine_min']:.4f} / {r['cosine_mean']:.5f} |")


if __name__ == "__main__":
    main()
