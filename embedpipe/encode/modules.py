"""The modules a sentence-transformers model applies after its pooling, in numpy: Dense (a linear
layer and its activation), LayerNorm and Normalize, exactly as sentence-transformers computes them.

    >>> dense = Module("Dense", in_features=2, out_features=1, activation="relu")
    >>> weights = {"0.weight": np.array([[1.0, -1.0]], dtype=np.float32), "0.bias": np.array([0.5], dtype=np.float32)}
    >>> apply_modules(np.array([[3.0, 1.0], [0.0, 2.0]], dtype=np.float32), (dense,), weights)
    array([[2.5],
           [0. ]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from ..model.recipe import Module
from .pooling import l2_normalize

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which sentence-transformers' LayerNorm keeps


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # exact (erf) GELU, torch.nn.GELU's default

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


ACTIVATION_FUNCTIONS = {
    "identity": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "gelu": _gelu,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def dense(vectors: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, activation: str) -> np.ndarray:
    out = vectors @ weight.T
    if bias is not None:
        out += bias
    return ACTIVATION_FUNCTIONS[activation](out)


def layer_norm(vectors: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=1, keepdims=True)
    variance = vectors.var(axis=1, keepdims=True)
    return (vectors - mean) / np.sqrt(variance + LAYER_NORM_EPS) * weight + bias


def apply_modules(vectors: np.ndarray, modules: tuple[Module, ...], weights: dict[str, np.ndarray]) -> np.ndarray:
    """Pooled vectors (B, D) through ``modules`` in order; ``weights`` as model.recipe.module_weights names them."""
    for position, module in enumerate(modules):
        if module.kind == "Dense":
            vectors = dense(vectors, weights[f"{position}.weight"], weights.get(f"{position}.bias"), module.activation)
        elif module.kind == "LayerNorm":
            vectors = layer_norm(vectors, weights[f"{position}.weight"], weights[f"{position}.bias"])
        else:
            vectors = l2_normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)
