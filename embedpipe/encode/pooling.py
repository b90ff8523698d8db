"""Pooling strategies: token hidden states -> one vector per text.

Every strategy is a pure numpy function ``(hidden (B,T,D) float32, mask (B,T) int) -> (B,D)``,
registered by name in ``POOLINGS``. All of them are correct for right *and* left padding.

    >>> hidden = np.arange(12, dtype=np.float32).reshape(1, 3, 4)   # one text, 3 tokens, 4 dims
    >>> pool("mean", hidden, np.array([[1, 1, 0]]))                  # the third token is padding
    array([[2., 3., 4., 5.]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError

PoolingFn = Callable[..., np.ndarray]


def _weighted_sum(hidden: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_t weights[b,t] * hidden[b,t,:] as one batched matrix product (no (B,T,D) temporary)."""
    return np.matmul(weights.astype(np.float32)[:, None, :], hidden)[:, 0, :]


def _count(weights: np.ndarray) -> np.ndarray:
    return np.clip(weights.sum(axis=1, keepdims=True, dtype=np.float32), 1e-9, None)


def cls_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first real token (the [CLS] of BERT-like tokenizers), wherever padding puts it."""
    first = np.argmax(mask, axis=1)
    return hidden[np.arange(hidden.shape[0]), first]


def mean_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens; the count is clamped so an all-padding row cannot divide by zero."""
    return _weighted_sum(hidden, mask) / _count(mask)


def max_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-dimension max over real tokens (padding set to -1e9, as sentence-transformers does)."""
    return np.where(mask[:, :, None] > 0, hidden, np.float32(-1e9)).max(axis=1)


def mean_sqrt_len_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum over real tokens divided by sqrt(number of tokens)."""
    return _weighted_sum(hidden, mask) / np.sqrt(_count(mask))


def weightedmean_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean weighted by position (1, 2, 3, ... over real tokens): later tokens count more.

    Positions are counted among real tokens, so left padding gives the same vector.
    """
    positions = np.cumsum(mask, axis=1) * mask
    return _weighted_sum(hidden, positions) / _count(positions)


def lasttoken_pooling(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The last real token (what decoder-style embedding models use)."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return hidden[np.arange(hidden.shape[0]), last]


def pooler_pooling(hidden: np.ndarray, mask: np.ndarray, *, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """BERT's pooler: tanh(W @ h_cls + b), with W and b taken from the checkpoint."""
    return np.tanh(cls_pooling(hidden, mask) @ weight.T + bias).astype(np.float32)


POOLINGS: dict[str, PoolingFn] = {
    "cls": cls_pooling,
    "mean": mean_pooling,
    "max": max_pooling,
    "mean_sqrt_len": mean_sqrt_len_pooling,
    "weightedmean": weightedmean_pooling,
    "lasttoken": lasttoken_pooling,
    "pooler": pooler_pooling,
}

# Strategies that need weights from the checkpoint beyond the encoder graph.
NEEDS_POOLER_WEIGHTS = frozenset({"pooler"})


def check_pooling(name: str) -> str:
    """Return ``name`` if it is a known strategy; otherwise raise an error listing the valid ones."""
    if name not in POOLINGS:
        raise ConfigError("pooling", f"{name!r} is unknown; choose one of: {', '.join(POOLINGS)}")
    return name


def pool(name: str, hidden: np.ndarray, mask: np.ndarray, **weights: np.ndarray) -> np.ndarray:
    """Pool ``hidden`` (B,T,D) under ``mask`` (B,T) with the strategy ``name`` -> (B,D) float32."""
    fn = POOLINGS[check_pooling(name)]
    return np.ascontiguousarray(fn(hidden, mask, **weights), dtype=np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
