"""What each int8 quantization choice costs and gives: speed and cosine to fp32, same texts, same run.

    python scripts/bench_quantize.py --corpus ../shared/data/wordnet_ret_corpus.parquet --rows 3000

Builds every variant from embedpipe's fp32 export of the model (into a temporary directory), then
times them in this process, round-robin (--repeats rounds, best round kept: other processes on the
machine slow some rounds down), encoding the same texts with the same tokenizer and batching as
`embedpipe encode`. Quality is the per-row cosine to the fp32 vectors (min and mean).

Variants:
  dynamic per-tensor, MatMul+Gather  onnxruntime's quantize_dynamic defaults (per-tensor scales)
  dynamic per-channel, all MatMul    optimum's AutoQuantizationConfig defaults: also quantizes the two
                                     activation x activation MatMuls of attention (Q.K^T, softmax.V)
                                     and the embedding Gather (embedpipe's int8 before issue 7)
  dynamic per-channel, weight MatMul only the MatMuls with a weight matrix (embedpipe's int8 now)
  ... keep FFN output dense fp32     plus the 6 FFN down-projections left in fp32 (node exclusion)
  ... keep last layer fp32           plus every MatMul of the last layer left in fp32
  static QDQ per-channel (MinMax / Percentile)  activation scales calibrated on --calibration rows
                                     of the corpus, so no DynamicQuantizeLinear at run time
  fused graph + dynamic              onnxruntime's BERT fusions (Attention, SkipLayerNorm, BiasGelu)
                                     first, then dynamic quantization (QAttention)
Weight/activation types (the instruction-set question; --types picks which to build):
  U8S8 / U8U8                        uint8 activations x int8 or uint8 weights. Before VNNI, x86's int8
                                     dot product (vpmaddubsw) adds pairs of u8*s8 products into int16
                                     and can saturate; onnxruntime's answer is reduce_range (7-bit
                                     weights) or U8U8 (a slower widening kernel)
  reduce_range                       7-bit weights (and activations for static), no saturation
Every "weight MatMul only" recipe is built for each type in --types; the others use the first.
  embedpipe <recipe>                 each of embedpipe.model.quantize's recipes (u8s8, u8u8, and the
                                     pre-VNNI u8s8-7bit-attention-output: U8S8 everywhere, 7-bit weights
                                     in the attention output projections), built by its own apply_recipe
  --groups                           which MatMuls saturate: one group at a time (Q, K, V, attention
                                     output, FFN in, FFN out) in U8S8, every other weight MatMul in U8U8
Writes results.json and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pyarrow.parquet as pq


class Calibration:
    """onnxruntime CalibrationDataReader over pre-tokenized batches."""

    def __init__(self, batches: list[dict]):
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # pragma: no cover - onnxruntime API
        pass


TYPES = {  # label -> (weight type, reduce_range)
    "U8S8 reduce_range": ("QInt8", True),
    "U8S8": ("QInt8", False),
    "U8U8": ("QUInt8", False),
}


MATMUL_GROUPS = {  # BERT-family node names (MiniLM's): the groups --groups switches to U8S8 one at a time
    "Q": "/attention/self/query/", "K": "/attention/self/key/", "V": "/attention/self/value/",
    "attention output": "/attention/output/dense/", "FFN in": "/intermediate/dense/", "FFN out": "/output/dense/",
}


def build_recipes(src: Path, workdir: Path, groups: bool) -> dict:
    """embedpipe's own recipes, and with ``groups`` one MatMul group at a time in U8S8 (the rest U8U8)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from embedpipe.model.quantize import RECIPES, apply_recipe, split_matmuls

    out: dict[str, Path] = {}
    for recipe in {r.name: r for recipes in RECIPES.values() for r in recipes}.values():
        out[f"embedpipe {recipe.name}"] = workdir / f"recipe-{recipe.name}.onnx"
        apply_recipe(src, out[f"embedpipe {recipe.name}"], recipe)
    if not groups:
        return out
    with_weights, _ = split_matmuls(onnx.load(str(src), load_external_data=False).graph)
    for label, key in MATMUL_GROUPS.items():
        signed = [n for n in with_weights if key in n and not (label == "FFN out" and "/attention/" in n)]
        first, path = workdir / f"group-{len(out)}.1.onnx", workdir / f"group-{len(out)}.onnx"
        options = dict(per_channel=True, op_types_to_quantize=["MatMul"],
                       extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        quantize_dynamic(str(src), str(first), weight_type=QuantType.QInt8, nodes_to_quantize=signed, **options)
        quantize_dynamic(str(first), str(path), weight_type=QuantType.QUInt8,
                         nodes_to_quantize=[n for n in with_weights if n not in signed], **options)
        out[f"U8S8 only in {label} ({len(signed)}), U8U8 elsewhere"] = path
    return out


def build_fusions(src: Path, workdir: Path, activation_only: list[str], heads: int, hidden: int) -> dict:
    """What --fusions builds (issue 29: the int8 graph on VNNI), each U8S8 per-channel: the weight
    MatMuls only (embedpipe's VNNI recipe) on onnxruntime's BERT fusions without attention
    (SkipLayerNorm, BiasGelu), or with fused attention in fp32 or int8 (QAttention), or on the plain
    graph with the attention products (Q.K^T, softmax.V) in int8 too."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from embedpipe.model.quantize import split_matmuls

    out: dict[str, Path] = {}
    common = dict(per_channel=True, weight_type=QuantType.QInt8,
                  extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    for attention in (False, True):
        options = FusionOptions("bert")
        options.enable_attention = attention
        fused = workdir / f"fused-attention-{attention}.onnx"
        optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1,
                       optimization_options=options).save_model_to_file(str(fused))
        _, fused_activation_only = split_matmuls(onnx.load(str(fused), load_external_data=False).graph)
        path = workdir / f"fused-attention-{attention}-int8.onnx"
        quantize_dynamic(str(fused), str(path), op_types_to_quantize=["MatMul", "Attention"] if attention else
                         ["MatMul"], nodes_to_exclude=fused_activation_only, **common)
        label = "fused attention (QAttention), SkipLayerNorm, BiasGelu" if attention else \
            "fused SkipLayerNorm, BiasGelu (attention unfused)"
        out[f"{label} + U8S8 weight MatMuls"] = path
    path = workdir / "int8-attention-products.onnx"
    quantize_dynamic(str(src), str(path), op_types_to_quantize=["MatMul"],
                     **{**common, "extra_options": {**common["extra_options"], "MatMulConstBOnly": False}})
    out["U8S8 weight MatMuls + int8 attention products (Q.K^T, softmax.V)"] = path
    return out


def build_variants(src: Path, workdir: Path, calibration: list[dict], types: list[str], heads: int,
                   hidden: int, only_types: bool = False, fusions: bool = False) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.transformers.optimizer import optimize_model

    from embedpipe.model.quantize import split_matmuls

    model = onnx.load(str(src), load_external_data=False)
    with_weights, activation_only = split_matmuls(model.graph)
    ffn_out = [n for n in with_weights if n.endswith("/output/dense/MatMul") and "attention" not in n]
    layers = sorted({n.split("/")[2] for n in with_weights if n.startswith("/encoder/layer.")},
                    key=lambda s: int(s.split(".")[-1]))
    last_layer = [n for n in with_weights if f"/{layers[-1]}/" in n] if layers else []
    weight_type, reduce_range = TYPES[types[0]]
    u8s8 = dict(weight_type=getattr(QuantType, weight_type), reduce_range=reduce_range)
    out: dict[str, Path] = {}

    def dynamic(name, **kw):
        path = workdir / f"{len(out)}.onnx"
        quantize_dynamic(str(src), str(path), **{**u8s8, **kw})
        out[name] = path

    for label in types:  # the recipe embedpipe uses, in each weight type
        weight, reduce = TYPES[label]
        dynamic(f"dynamic per-channel, weight MatMul only, {label}", per_channel=True, op_types_to_quantize=["MatMul"],
                nodes_to_exclude=activation_only, weight_type=getattr(QuantType, weight), reduce_range=reduce)
    if fusions:
        out.update(build_fusions(src, workdir, activation_only, heads, hidden))
    if only_types:
        return out
    dynamic("dynamic per-tensor, MatMul+Gather", per_channel=False, op_types_to_quantize=["MatMul", "Gather"])
    dynamic("dynamic per-channel, all MatMul+Gather", per_channel=True, op_types_to_quantize=["MatMul", "Gather"],
            extra_options={"MatMulConstBOnly": False})
    dynamic("... per-tensor weight scales", per_channel=False, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_only)
    attention_projections = [n for n in with_weights if "/attention/" in n]
    dynamic("... FFN MatMuls only (attention projections fp32)", per_channel=True, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_only + attention_projections)
    dynamic("... keep FFN output dense fp32", per_channel=True, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_only + ffn_out)
    dynamic("... keep last layer fp32", per_channel=True, op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_only + last_layer)
    for method in (CalibrationMethod.MinMax, CalibrationMethod.Percentile):
        path = workdir / f"{len(out)}.onnx"
        quantize_static(str(src), str(path), Calibration(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=reduce_range, op_types_to_quantize=["MatMul"], nodes_to_exclude=activation_only,
                        calibrate_method=method, extra_options={"CalibMovingAverage": True})
        out[f"static QDQ per-channel, {method.name}"] = path
    fused = workdir / "fused.onnx"
    optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden,
                   opt_level=1).save_model_to_file(str(fused))
    path = workdir / f"{len(out)}.onnx"
    quantize_dynamic(str(fused), str(path), per_channel=True, **u8s8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    out["fused graph (fp32)"] = fused
    out["fused graph + dynamic (QAttention)"] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--calibration", type=int, default=512, help="corpus rows (after --rows) to calibrate on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--types", default=",".join(TYPES),
                        help=f"comma list of weight/activation types to build the main recipe in: {', '.join(TYPES)}")
    parser.add_argument("--only-types", action="store_true", help="build only the main recipe in each type")
    parser.add_argument("--groups", action="store_true",
                        help="also one MatMul group at a time in U8S8, the rest U8U8 (which groups saturate)")
    parser.add_argument("--fusions", action="store_true",
                        help="also onnxruntime's BERT fusions with U8S8 weight MatMuls, fused int8 attention, and "
                             "int8 attention products (the VNNI experiments of issue 29)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    parser.add_argument("--out", default="bench_out/quantize")
    args = parser.parse_args()

    import onnxruntime as ort

    from embedpipe.encode.batching import BatchPlan
    from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare
    from embedpipe.model.quantize import cpu_isa

    texts = pq.read_table(args.corpus, columns=[args.text_column]).column(0).to_pylist()
    calibration_texts = texts[args.rows:args.rows + args.calibration] or texts[:args.calibration]
    texts = texts[:args.rows]
    exported, max_length = prepare(EncoderSpec())
    reference = TextEncoder(exported.path, "mean", True, max_length)
    # Histogram calibrators (Percentile) need every batch of one shape: pad all to the longest text.
    calibration, ids = [], reference.tokenize(calibration_texts)
    width = max(map(len, ids))
    for start in range(0, len(ids), 64):
        feeds = reference.feeds(ids[start:start + 64])
        calibration.append({k: np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=reference.pad_id
                                      if k == "input_ids" else 0) for k, v in feeds.items()})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = json.loads((exported.path / "config.json").read_text())
        print("building variants ...", file=sys.stderr)
        built = build_variants(exported.onnx_path, Path(tmp), calibration, args.types.split(","),
                               config["num_attention_heads"], config["hidden_size"], args.only_types, args.fusions)
        variants = {"fp32": exported.onnx_path, **built, **build_recipes(exported.onnx_path, Path(tmp), args.groups)}
        encoders = {}
        for name, path in variants.items():
            encoder = TextEncoder(exported.path, "mean", True, max_length, BatchPlan(threads=args.threads))
            encoder.session = ort.InferenceSession(str(path), encoder.session_options(),
                                                   providers=["CPUExecutionProvider"])
            encoder.encode(texts[:256])  # warm-up
            encoders[name] = (encoder, path.stat().st_size)
        rates = {name: [] for name in encoders}
        # Rows per CPU-second of this process: with --threads 1 (one call, no spinning pool threads) that
        # is the work each graph costs, much less moved by other processes than wall time on a busy machine.
        cpu_rates = {name: [] for name in encoders}
        loads = {name: [] for name in encoders}   # the 1-minute load average as each timing began
        vectors = {}
        for round_ in range(args.repeats):
            for name, (encoder, _) in encoders.items():
                loads[name].append(float(Path("/proc/loadavg").read_text().split()[0]))
                start, cpu_start = time.perf_counter(), time.process_time()
                vectors[name] = encoder.encode(texts)
                rates[name].append(len(texts) / (time.perf_counter() - start))
                cpu_rates[name].append(len(texts) / (time.process_time() - cpu_start))
            print(f"round {round_ + 1}/{args.repeats} done", file=sys.stderr)
    fp32 = vectors["fp32"]
    for name, (_, size) in encoders.items():
        cosines = (vectors[name] * fp32).sum(1)
        results.append({"variant": name, "rows_per_second": max(rates[name]), "rates": rates[name],
                        "median_rows_per_second": float(np.median(rates[name])), "loads": loads[name],
                        "rows_per_cpu_second": float(np.median(cpu_rates[name])), "cpu_rates": cpu_rates[name],
                        "model_mb": size / 1e6, "cosine_min": float(cosines.min()),
                        "cosine_mean": float(cosines.mean())})
    for row in results:
        row["speedup_vs_fp32"] = row["rows_per_second"] / results[0]["rows_per_second"]
        # round by round against fp32 (timed next to it, at nearly the same load), the median of those
        row["median_ratio_vs_fp32"] = float(np.median(np.array(row["rates"]) / np.array(results[0]["rates"])))
        row["cpu_ratio_vs_fp32"] = row["rows_per_cpu_second"] / results[0]["rows_per_cpu_second"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"corpus": args.corpus, "rows": len(texts), "cpus": os.cpu_count(), "threads": args.threads,
              "isa": cpu_isa(), "types": args.types,
              "repeats": args.repeats, "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    plot(results, out / "quantize.png")
    print("| variant | rows/s best (median) | vs fp32 best (median of rounds) | rows per CPU-second (vs fp32) "
          "| load avg per round | model MB | cosine min | cosine mean |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        loads = ", ".join(f"{x:.1f}" for x in r["loads"])
        print(f"| {r['variant']} | {r['rows_per_second']:.0f} ({r['median_rows_per_second']:.0f}) "
              f"| {r['speedup_vs_fp32']:.2f}x ({r['median_ratio_vs_fp32']:.2f}x) "
              f"| {r['rows_per_cpu_second']:.1f} ({r['cpu_ratio_vs_fp32']:.2f}x) | {loads} | {r['model_mb']:.0f} "
              f"| {r['cosine_min']:.4f} | {r['cosine_mean']:.5f} |")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.scatter(r["speedup_vs_fp32"], 1 - r["cosine_mean"], s=30)
        ax.annotate(r["variant"], (r["speedup_vs_fp32"], 1 - r["cosine_mean"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("speed vs fp32 (higher is better)")
    ax.set_ylabel("1 - mean cosine to fp32 (lower is better)")
    ax.set_title("int8 quantization choices: speed against quality")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
