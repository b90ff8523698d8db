"""Compact vector codes: how int8/uint8 codes and packed sign bits stand for float vectors.

    >>> v = np.array([[0.5, -0.25, 0.0, 1.0, -1.0, 0.1, 0.2, -0.3]], dtype=np.float32)
    >>> quantize(v, "ubinary")                      # one bit per dimension: > 0, packed as numpy packbits
    array([[150]], dtype=uint8)
    >>> ranges = np.array([[-1.0] * 8, [1.0] * 8], dtype=np.float32)
    >>> quantize(v, "int8", ranges)[0, :4]
    array([ 63, -33,  -1, 126], dtype=int8)

The codes are exactly sentence-transformers' ``quantize_embeddings`` for the same ranges (tests check
it): int8/uint8 split each dimension's [min, max] into 255 steps (floor, clipped), binary packs the
signs (> 0) into bits, ``binary`` stored as int8 (packed - 128), ``ubinary`` as uint8.

``dequantize`` is the reading back every float consumer uses (exact search, classify probes): the
middle of each int8 step; for bits, +-1/sqrt(dim) per dimension (a unit vector whose inner products
rank as the Hamming distance does).
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput, CorruptArtifact

FLOAT_DTYPES = ("float32", "float16")
QUANTIZED = ("int8", "uint8")        # one byte per dimension, per-dimension ranges
PACKED = ("binary", "ubinary")       # one bit per dimension
COMPACT = QUANTIZED + PACKED
RESCORE_DTYPES = ("int8", "uint8", "float16", "float32")   # what may be kept beside bits to rescore them
NUMPY_DTYPE = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
               "binary": np.int8, "ubinary": np.uint8}


def code_width(dim: int, dtype: str) -> int:
    """Values stored per vector: ``dim`` bytes or floats, ``dim / 8`` bytes for packed bits."""
    return dim // 8 if dtype in PACKED else dim


def bytes_per_vector(dim: int, dtype: str) -> int:
    return code_width(dim, dtype) * np.dtype(NUMPY_DTYPE[dtype]).itemsize


def check_dim(dim: int, dtype: str) -> None:
    """Packed bits need whole bytes (FAISS binary indexes too)."""
    if dtype in PACKED and dim % 8:
        raise BadInput(f"dtype {dtype} packs 8 dimensions per byte; dimension {dim} is not a multiple of 8 "
                       "(pass a truncate_dim that is)", fields=("dtype",))


def as_ranges(ranges) -> np.ndarray:
    """Anything array-like of shape (2, dim) -> float32 [min; max], refused when not finite or min > max."""
    try:
        out = np.asarray(ranges, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadInput("calibration ranges must be numbers of shape (2, dim)", fields=("ranges",)) from None
    if out.ndim != 2 or out.shape[0] != 2 or out.shape[1] == 0:
        raise BadInput(f"calibration ranges have shape {out.shape}, expected (2, dim): a row of minima, "
                       "a row of maxima", fields=("ranges",))
    if not np.isfinite(out).all():
        raise BadInput("calibration ranges hold NaN or infinite values", fields=("ranges",))
    if (out[0] > out[1]).any():
        raise BadInput(f"calibration ranges have a minimum above its maximum in dimension "
                       f"{int(np.argmax(out[0] > out[1]))}", fields=("ranges",))
    return out


def ranges_of(vectors: np.ndarray) -> np.ndarray:
    """Per-dimension [min; max] of float vectors (2, dim) float32: the calibration."""
    return np.vstack((vectors.min(axis=0), vectors.max(axis=0))).astype(np.float32)


def _steps(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = ranges[0]
    steps = (ranges[1] - ranges[0]) / 255
    return starts, np.where(steps == 0, 1, steps).astype(np.float32)


def quantize(vectors: np.ndarray, dtype: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Float vectors (n, dim) -> codes of ``dtype`` (floats are cast; int8/uint8 need ``ranges``)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if dtype in FLOAT_DTYPES:
        return vectors.astype(NUMPY_DTYPE[dtype], copy=False)
    if dtype in QUANTIZED:
        if ranges is None:
            raise BadInput(f"dtype {dtype} needs calibration ranges", fields=("ranges",))
        starts, steps = _steps(as_ranges(ranges))
        if len(starts) != vectors.shape[1]:
            raise BadInput(f"calibration ranges are for dimension {len(starts)}, the vectors have "
                           f"{vectors.shape[1]}", fields=("ranges",))
        levels = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        return levels.astype(np.uint8) if dtype == "uint8" else (levels - 128).astype(np.int8)
    if dtype in PACKED:
        check_dim(vectors.shape[1], dtype)
        bits = np.packbits(vectors > 0, axis=-1).reshape(vectors.shape[0], -1)
        return bits if dtype == "ubinary" else (bits.astype(np.int16) - 128).astype(np.int8)
    raise BadInput(f"unknown vector dtype {dtype!r}", fields=("dtype",))


def sign_bits(codes: np.ndarray, dtype: str) -> np.ndarray:
    """Packed codes of either binary dtype -> uint8 bits as numpy packbits made them (FAISS binary's input)."""
    codes = np.asarray(codes)
    return codes.astype(np.uint8) if dtype == "ubinary" else (codes.astype(np.int16) + 128).astype(np.uint8)


def dequantize(codes: np.ndarray, dtype: str, dim: int, ranges: np.ndarray | None = None) -> np.ndarray:
    """Codes -> float32 (n, dim): floats as they are, the middle of each int8 step, +-1/sqrt(dim) per bit."""
    if dtype in FLOAT_DTYPES:
        return np.asarray(codes).astype(np.float32, copy=False)
    if dtype in QUANTIZED:
        if ranges is None:
            raise CorruptArtifact(f"{dtype} vectors without calibration ranges cannot be read as floats")
        starts, steps = _steps(as_ranges(ranges))
        levels = np.asarray(codes).astype(np.float32) + (128 if dtype == "int8" else 0)
        return (levels + 0.5) * steps + starts
    if dtype in PACKED:
        bits = np.unpackbits(sign_bits(codes, dtype), axis=-1)[:, :dim]
        return ((bits.astype(np.float32) * 2 - 1) / np.sqrt(dim)).astype(np.float32)
    raise CorruptArtifact(f"unknown vector dtype {dtype!r}")


def ranges_record(ranges: np.ndarray) -> dict:
    """(2, dim) float32 -> the manifest's JSON (exact: a float32 is written as the float64 it equals)."""
    ranges = as_ranges(ranges)
    return {"min": [float(x) for x in ranges[0]], "max": [float(x) for x in ranges[1]]}


def ranges_from_record(record: dict | None) -> np.ndarray | None:
    if record is None:
        return None
    try:
        return as_ranges([record["min"], record["max"]])
    except (KeyError, TypeError, BadInput) as e:
        raise CorruptArtifact(f"the recorded calibration ranges are not valid ({e})") from None
