"""Probes on compact vectors: the frozen vectors as an ``encode --dtype ... --truncate-dim ...`` output
would hold them, read back as floats (formats/codes.dequantize), so a probe answers "does this
classify as well from int8 codes or sign bits?".

    >>> x = np.array([[0.5, -0.5, 0.2, 0.1, 0.3, -0.2, 0.6, -0.7]], dtype=np.float32)
    >>> stored_like("binary", None, True, x, x, np.array([0]))[1].round(3)
    array([[ 0.354, -0.354,  0.354,  0.354,  0.354, -0.354,  0.354, -0.354]], dtype=float32)

int8 / uint8 ranges are learned from the training rows only (the test rows never shape the codes).
"""

from __future__ import annotations

import numpy as np

from ..encode.codec import VectorCodec, truncate
from ..formats.codes import QUANTIZED, check_dim, dequantize, ranges_of


def stored_like(dtype: str, truncate_dim: int | None, normalize: bool, x_train: np.ndarray, x_test: np.ndarray,
                fit_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) float vectors -> the same, truncated and quantized to ``dtype``, then read back as floats."""
    if dtype == "float32" and truncate_dim is None:
        return x_train, x_test
    dim = min(truncate_dim or x_train.shape[1], x_train.shape[1])
    check_dim(dim, dtype)
    ranges = ranges_of(truncate(x_train[fit_rows], truncate_dim, normalize)) if dtype in QUANTIZED else None
    codec = VectorCodec(dtype, truncate_dim, normalize, ranges)
    return tuple(dequantize(codec(x), dtype, dim, ranges) for x in (x_train, x_test))
