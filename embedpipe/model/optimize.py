"""Make an export faster: onnxruntime graph optimization (O1-O3), and the export options' checks
(int8 quantization itself is in quantize.py).

scripts/bench_quantize.py measures what each choice costs in accuracy and gives in speed.
"""

from __future__ import annotations

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
