"""Synthetic vector directories for the index tests: clustered random unit vectors (neighbourhoods
like real embeddings have) written through the real VectorWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedpipe.formats.vectors import VectorWriter

DIM = 24


def clustered_unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Points around 40 random centres, normalized: neighbourhoods like real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_vectors(path: Path, x: np.ndarray, *, normalize: bool = True, rows_per_shard: int = 5_000) -> Path:
    with VectorWriter(path, dim=x.shape[1], rows_per_shard=rows_per_shard) as writer:
        writer.write([f"doc{i}" for i in range(len(x))], x)
        writer.publish({"model": {"name": "synthetic"}, "pooling": "mean", "normalize": normalize})
    return path
