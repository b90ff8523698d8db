"""Make an export faster: onnxruntime graph optimization (O1-O3) and dynamic int8 quantization
tuned for this CPU's instruction set.

    >>> cpu_isa()                                    # doctest: +SKIP
    'avx512_vnni'

scripts/bench_quantize.py measures what each choice costs in accuracy and gives in speed.
"""

from __future__ import annotations

import platform
from pathlib import Path

from ..errors import ConfigError

OPTIMIZE_LEVELS = ("O1", "O2", "O3")
QUANTIZE_MODES = ("int8",)


def check_export_options(optimize: str | None, quantize: str | None) -> None:
    if optimize is not None and optimize not in OPTIMIZE_LEVELS:
        raise ConfigError("optimize", f"must be one of {', '.join(OPTIMIZE_LEVELS)} or null, got {optimize!r}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ConfigError("quantize", f"must be one of {', '.join(QUANTIZE_MODES)} or null, got {quantize!r}")


def optimize_graph(directory: Path, onnx_file: str, level: str) -> str:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(directory, file_names=[onnx_file])
    optimizer.optimize(AutoOptimizationConfig.with_optimization_level(level), save_dir=directory)
    return onnx_file.replace(".onnx", "_optimized.onnx")


def cpu_isa() -> str:
    """The instruction set dynamic int8 quantization is tuned for on this machine."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def split_matmuls(graph) -> tuple[list[str], list[str]]:
    """An ONNX graph's MatMul node names: (those multiplying by a weight initializer, those of two activations)."""
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    return ([n.name for n in matmuls if weights.intersection(n.input)],
            [n.name for n in matmuls if not weights.intersection(n.input)])


def quantize_int8(directory: Path, onnx_file: str) -> str:
    """Dynamic int8 for this CPU, per-channel weight scales, on the MatMuls that multiply by a weight.

    Left in fp32: the two activation x activation MatMuls of each attention layer (Q.K^T and
    softmax.V, whose inputs get one scale per call and lose most: mean cosine 0.9929 -> 0.9935 and
    min 0.977 -> 0.983 to fp32 on WordNet glosses, at the same speed) and the embedding Gather
    (no speed to gain). scripts/bench_quantize.py measures these and other choices.

    The weight type follows the CPU at export time (cpu_isa, part of the export cache key):
    optimum's config for that instruction set. On AVX-512 VNNI that is uint8 x int8 (U8S8, the
    VNNI dot product); on AVX2 it is U8U8. U8S8 runs faster on AVX2 (2.55x fp32 against U8U8's
    1.79x on 200 passages, `bench_quantize.py --only-types`, README) but vpmaddubsw's int16
    saturation costs quality (mean cosine 0.9884), and U8S8 with 7-bit weights (reduce_range)
    still fell short of 0.99 (0.9899, 1.92x); U8U8 is the recipe that keeps mean cosine >= 0.99
    (0.9917), so AVX2 keeps it.
    """
    import onnx
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    _, activation_matmuls = split_matmuls(onnx.load(str(directory / onnx_file), load_external_data=False).graph)
    config = getattr(AutoQuantizationConfig, cpu_isa())(is_static=False, per_channel=True,
                                                        operators_to_quantize=["MatMul"],
                                                        nodes_to_exclude=activation_matmuls)
    quantizer = ORTQuantizer.from_pretrained(directory, file_name=onnx_file)
    quantizer.quantize(quantization_config=config, save_dir=directory)
    return onnx_file.replace(".onnx", "_quantized.onnx")
