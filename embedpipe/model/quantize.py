"""Dynamic int8 for this CPU: which weight type each MatMul gets, checked against fp32 before it is kept.

    >>> RECIPES["avx2"][0].describe()
    'uint8 x int8 weights, 7-bit weights in the attention output projections'

The activations are uint8; what differs by instruction set is the weights. With AVX-512 VNNI (and on
ARM) the int8 dot product accumulates straight into int32, so uint8 x int8 (U8S8) everywhere is
exact and fast. Before VNNI, x86 multiplies uint8 by int8 with vpmaddubsw, which adds each pair of
products into int16 and can saturate; onnxruntime's fallback is uint8 weights (U8U8), a slower
widening kernel. Measured on MiniLM (scripts/bench_quantize.py, 1000 passages, one thread, AVX2):
U8U8 everywhere 1.29x fp32 at mean cosine 0.9918; U8S8 everywhere 1.59x but 0.9895; switching one
group of MatMuls at a time to U8S8 showed that only the attention output projections lose quality
(their input, softmax x V, has the widest range), so the AVX2 recipe keeps U8S8 everywhere and gives
just those projections 7-bit weights (``reduce_range``: a pair of products then fits int16): 1.60x
at 0.9912.

Any model can quantize differently, so every recipe is checked on the packaged sample texts against
the fp32 graph it came from (cosine of the mean-pooled token states) and the next recipe of the
list is tried when it falls below ``QUALITY_FLOOR``; export.json records what was kept and measured.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, EmbedpipeError

QUALITY_FLOOR = 0.99          # mean cosine to fp32 a recipe must keep on the sample texts
CHECK_TEXTS = 128             # sample texts the check encodes with both graphs
CHECK_MAX_TOKENS = 128
RECIPES_VERSION = 2           # part of the export key: a changed recipe re-exports cached int8 models
SAMPLE_TEXTS = Path(__file__).resolve().parent.parent / "data" / "sample_corpus.parquet"
SHAPE_ONLY_OPS = {"Transpose", "Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Cast"}


@dataclass(frozen=True)
class Int8Recipe:
    name: str
    signed_weights: bool              # int8 weights (U8S8) rather than uint8 (U8U8)
    reduce_attention_output: bool     # 7-bit weights in the attention output projections

    def describe(self) -> str:
        text = "uint8 x int8 weights" if self.signed_weights else "uint8 x uint8 weights"
        return text + (", 7-bit weights in the attention output projections" if self.reduce_attention_output else "")


U8S8 = Int8Recipe("u8s8", True, False)
U8S8_7BIT_ATTENTION_OUTPUT = Int8Recipe("u8s8-7bit-attention-output", True, True)
U8U8 = Int8Recipe("u8u8", False, False)
RECIPES = {  # by cpu_isa(): the fastest first, then what to fall back to when the check refuses it
    "avx512_vnni": (U8S8, U8U8),
    "arm64": (U8S8, U8U8),
    "avx512": (U8S8_7BIT_ATTENTION_OUTPUT, U8U8),
    "avx2": (U8S8_7BIT_ATTENTION_OUTPUT, U8U8),
}


FORCE_ISA_ENV = "EMBEDPIPE_INT8_ISA"  # a key of RECIPES: quantize as for that CPU (tests pin each one this way)


def isa_of(machine: str, cpuinfo: str) -> str:
    """The instruction set dynamic int8 is tuned for, from ``platform.machine()`` and /proc/cpuinfo's text.

        >>> isa_of("x86_64", "flags : fpu sse2 avx2 avx512f avx512bw")
        'avx512'
    """
    if machine.lower() in ("arm64", "aarch64"):
        return "arm64"
    if "avx512_vnni" in cpuinfo:
        return "avx512_vnni"
    if "avx512f" in cpuinfo:
        return "avx512"
    return "avx2"


def cpu_isa() -> str:
    """The instruction set dynamic int8 quantization is tuned for on this machine, or the one
    $EMBEDPIPE_INT8_ISA names (an export made here for other CPUs, or a test of each recipe list)."""
    forced = os.environ.get(FORCE_ISA_ENV)
    if forced:
        if forced not in RECIPES:
            raise EmbedpipeError(f"{FORCE_ISA_ENV}={forced!r} is not an instruction set embedpipe knows; "
                                 f"choose one of {', '.join(RECIPES)}")
        return forced
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return isa_of(platform.machine(), cpuinfo)


def split_matmuls(graph) -> tuple[list[str], list[str]]:
    """An ONNX graph's MatMul node names: (those multiplying by a weight initializer, those of two activations)."""
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    return ([n.name for n in matmuls if weights.intersection(n.input)],
            [n.name for n in matmuls if not weights.intersection(n.input)])


def attention_output_matmuls(graph) -> list[str]:
    """The weight MatMuls fed by an activation x activation MatMul through shape-only ops: the
    attention output projection after softmax x V, found by the graph's shape, not by a naming scheme."""
    with_weights, activation_only = split_matmuls(graph)
    by_name = {n.name: n for n in graph.node}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, weighted = [], set(with_weights)
    for name in activation_only:
        frontier = list(by_name[name].output)
        while frontier:
            for node in consumers.get(frontier.pop(), []):
                if node.name in weighted:
                    found.append(node.name)
                elif node.op_type in SHAPE_ONLY_OPS:
                    frontier.extend(node.output)
    return sorted(set(found))


def apply_recipe(source: Path, target: Path, recipe: Int8Recipe) -> None:
    """Quantize the weight MatMuls of ``source`` by ``recipe`` into ``target``. The two activation x
    activation MatMuls of each attention layer (Q.K^T, softmax.V) stay fp32: their inputs get one
    scale per call and lose the most (mean cosine 0.9929 against 0.9935 on WordNet glosses, at the
    same speed), and so does the embedding Gather (no speed to gain)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    with_weights, _ = split_matmuls(graph)
    reduced = attention_output_matmuls(graph) if recipe.reduce_attention_output else []
    passes = [(nodes, reduce_range) for nodes, reduce_range in
              [([n for n in with_weights if n not in reduced], False), (reduced, True)] if nodes]
    weight_type = QuantType.QInt8 if recipe.signed_weights else QuantType.QUInt8
    current = source
    for step, (nodes, reduce_range) in enumerate(passes):
        out = target if step == len(passes) - 1 else target.with_suffix(f".pass{step}.onnx")
        quantize_dynamic(str(current), str(out), weight_type=weight_type, per_channel=True, reduce_range=reduce_range,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if current != source:
            current.unlink()
        current = out


def sample_feeds(tokenizer_file: Path, input_names: set[str], max_tokens: int) -> list[dict[str, np.ndarray]]:
    """The packaged sample texts, tokenized for a graph with these inputs (at most ``max_tokens``
    tokens each, within the model's positions), in batches of 32."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    from .feeds import flatten, pack

    texts = pq.read_table(SAMPLE_TEXTS, columns=["text"]).column(0).to_pylist()[:CHECK_TEXTS]
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(min(max_tokens, CHECK_MAX_TOKENS))
    ids = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]
    return [pack(*flatten(ids[start:start + 32]), pad_id=0, token_types="token_type_ids" in input_names,
                 position_ids="position_ids" in input_names) for start in range(0, len(ids), 32)]


def graph_inputs(onnx_path: Path) -> set[str]:
    """The names of a graph's inputs (fp32 and int8 graphs of one export take the same ones)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {i.name for i in graph.input} - {i.name for i in graph.initializer}


def pooled_states(onnx_path: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Mean-pooled, L2-normalized last hidden states of the texts in ``batches`` (``sample_feeds``):
    one row per text."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output = session.get_outputs()[0].name
    rows = []
    for feeds in batches:
        hidden = session.run([output], feeds)[0].astype(np.float64)
        mask = feeds["attention_mask"][..., None]
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1)
        rows.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
    return np.concatenate(rows)


def above_floor(cosine: float | None) -> bool:
    """Whether a measured cosine keeps the floor; NaN or a missing figure never does (a comparison
    with NaN is False either way, so the test is written as the one that must hold)."""
    return cosine is not None and math.isfinite(cosine) and cosine >= QUALITY_FLOOR


def quality_warning(record: dict) -> str | None:
    """What to tell a user whose int8 export stays below the quality floor; None when it is above."""
    if above_floor(record["cosine_mean"]):
        return None
    return (f"int8 keeps a mean cosine of {record['cosine_mean']:.4f} to fp32 on the sample texts at best "
            f"({record['describe']}), below {QUALITY_FLOOR}; compare both on your own data before relying on it")


def quantize_int8(directory: Path, onnx_file: str, tokenizer_file: Path, max_tokens: int = CHECK_MAX_TOKENS,
                  isa: str | None = None) -> tuple[str, dict]:
    """Dynamic int8, per-channel weight scales, by the first recipe for this CPU (``RECIPES``) that
    keeps mean cosine >= QUALITY_FLOOR to fp32 on the sample texts -> (file name, what export.json records).
    When none does, the closest is kept (``quality_warning`` words it)."""
    isa = isa or cpu_isa()
    source = directory / onnx_file
    feeds = sample_feeds(tokenizer_file, graph_inputs(source), max_tokens)  # tokenized once for every graph
    reference = pooled_states(source, feeds)
    if not np.isfinite(reference).all():
        raise BadInput(f"the fp32 model {source} gives NaN or inf token states on the sample texts: its weights "
                       "hold non-finite values, so no int8 copy of it can be checked; check the model")
    target = directory / onnx_file.replace(".onnx", "_quantized.onnx")
    tried, best = [], None
    for recipe in RECIPES[isa]:
        candidate = target.with_suffix(f".{recipe.name}.onnx")
        apply_recipe(source, candidate, recipe)
        cosines = (pooled_states(candidate, feeds) * reference).sum(1)
        cosines = np.where(np.isfinite(cosines), cosines, -1.0)  # a NaN row counts as the worst, never as a pass
        tried.append({"recipe": recipe.name, "cosine_mean": round(float(cosines.mean()), 5),
                      "cosine_min": round(float(cosines.min()), 5)})
        if best is None or tried[-1]["cosine_mean"] > best[1]["cosine_mean"]:
            if best is not None:
                best[0].unlink()
            best = (candidate, tried[-1], recipe)
        else:
            candidate.unlink()
        if above_floor(tried[-1]["cosine_mean"]):
            break
    kept, measured, recipe = best
    kept.rename(target)
    record = {"recipe": recipe.name, "describe": recipe.describe(), "sample_texts": CHECK_TEXTS,
              "cosine_mean": measured["cosine_mean"], "cosine_min": measured["cosine_min"], "tried": tried}
    return target.name, record
