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


def weightedmean_pooling(hidden: np.ndarray, mask: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Mean weighted by position (1, 2, 3, ... over real tokens): later tokens count more.

    Positions are counted among real tokens, so left padding gives the same vector. ``pool`` passes
    ``positions`` when a prompt is left out of the pooling: the text's tokens keep the positions they
    have after the prompt, as sentence-transformers weighs them.
    """
    positions = np.cumsum(mask, axis=1) * mask if positions is None else positions
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
# Not a strategy but a choice: the model's own pooling (its sentence-transformers configuration, mean for
# a plain transformers model), resolved per model before anything is pooled (model/recipe.py).
MODEL_POOLING = "model"
POOLING_CHOICES = (MODEL_POOLING, *POOLINGS)


def check_pooling(name: str, *, allow_model: bool = False) -> str:
    """Return ``name`` if it is a known strategy (or ``"model"`` where ``allow_model``); otherwise raise
    an error listing the valid ones."""
    valid = POOLING_CHOICES if allow_model else tuple(POOLINGS)
    if name not in valid:
        raise ConfigError("pooling", f"{name!r} is unknown; choose one of: {', '.join(valid)}")
    return name


def exclude_prompt(mask: np.ndarray, prompt_tokens: int) -> np.ndarray:
    """The mask with each row's first ``prompt_tokens`` real tokens cleared, so pooling skips the prompt
    (sentence-transformers' ``include_prompt: false``), under right or left padding.

    >>> exclude_prompt(np.array([[1, 1, 1, 0], [0, 1, 1, 1]]), 2).tolist()
    [[0, 0, 1, 0], [0, 0, 0, 1]]
    """
    if prompt_tokens <= 0:
        return mask
    first = np.argmax(mask, axis=1)[:, None]
    columns = np.arange(mask.shape[1])[None, :]
    return np.where(columns < first + prompt_tokens, 0, mask).astype(mask.dtype)


def pool(name: str, hidden: np.ndarray, mask: np.ndarray, skip_tokens: int = 0, **weights: np.ndarray) -> np.ndarray:
    """Pool ``hidden`` (B,T,D) under ``mask`` (B,T) with the strategy ``name`` -> (B,D) float32, leaving
    out each row's first ``skip_tokens`` real tokens (a prompt, for models with ``include_prompt: false``)."""
    fn = POOLINGS[check_pooling(name)]
    if skip_tokens:
        pooled = exclude_prompt(mask, skip_tokens)
        if fn is weightedmean_pooling:
            weights = {**weights, "positions": np.cumsum(mask, axis=1) * pooled}
        mask = pooled
    return np.ascontiguousarray(fn(hidden, mask, **weights), dtype=np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
