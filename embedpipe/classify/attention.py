"""The attention-pooling head: a learned query attends over the frozen token states of the last
layer, and the pooled vector goes through the mlp head (pre_classifier + ReLU + dropout + classifier).

    >>> run = train_attention(train_tokens, y_train, test_tokens, y_test, n_classes, seed=0,
    ...                       options=MlpOptions(), val=(val_tokens, y_val))          # doctest: +SKIP
    >>> run.accuracy, run.best_epoch                                                  # doctest: +SKIP

Instead of a fixed rule (first token, mean, max), the head learns which tokens matter:
weights = softmax over the real tokens of (states @ query) / sqrt(dim), pooled = weights @ states.
Trained like the mlp head (AdamW, batches, early stopping on the validation rows); the token
states are read from the float16 cache (classify/features.py), one padded batch at a time.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..encode.layers import TokenStates
from .probes import MlpOptions, scored, train_with_early_stopping, val_score


def padded(tokens: TokenStates, rows: np.ndarray):
    """(B, longest, dim) float32 states and a (B, longest) bool mask for ``rows``."""
    import torch

    lengths = np.diff(tokens.offsets)[rows]
    out = np.zeros((len(rows), int(lengths.max()), tokens.states.shape[1]), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, :lengths[i]] = tokens.states[tokens.offsets[row]:tokens.offsets[row + 1]]
    mask = np.arange(out.shape[1])[None, :] < lengths[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask)


def attention_module(dim: int, n_classes: int, dropout: float):
    import torch
    from torch import nn

    class AttentionPoolingHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.query = nn.Parameter(torch.zeros(dim))   # zero: training starts from mean pooling
            self.pre_classifier = nn.Linear(dim, dim)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(dim, n_classes)

        def pool(self, states, mask):
            scores = (states @ self.query) / math.sqrt(dim)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            return (weights.unsqueeze(-1) * states).sum(1)

        def forward(self, states, mask):
            hidden = torch.relu(self.pre_classifier(self.pool(states, mask)))
            return self.classifier(self.dropout(hidden))

    return AttentionPoolingHead()


def _logits(model, tokens: TokenStates, batch_size: int = 256):
    import torch

    out = None
    order = np.argsort(np.diff(tokens.offsets), kind="stable")   # similar lengths together: less padding
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            logits = model(*padded(tokens, rows))
            if out is None:
                out = torch.empty((len(tokens), logits.shape[1]))
            out[torch.from_numpy(rows)] = logits
    return out


def train_attention(train: TokenStates, y_train: np.ndarray, test: TokenStates, y_test: np.ndarray,
                    n_classes: int, seed: int, options: MlpOptions = MlpOptions(),
                    val: tuple[TokenStates, np.ndarray] | None = None):
    """Train the head on ``train`` (early stopping on ``val``), then score it once on ``test`` -> ProbeRun."""
    import torch

    torch.manual_seed(seed)
    model = attention_module(train.states.shape[1], n_classes, options.dropout)
    labels = torch.from_numpy(y_train.astype(np.int64))

    def batches(generator):
        for batch in torch.randperm(len(train), generator=generator).split(options.batch_size):
            rows = batch.numpy()
            yield model(*padded(train, rows)), labels[batch]

    def val_accuracy():
        return val_score(_logits(model, val[0]), val[1])

    started = time.perf_counter()
    best_epoch = train_with_early_stopping(torch, model, batches, options, seed,
                                           val_accuracy if val is not None and len(val[1]) else None)
    trained = time.perf_counter()
    predicted = _logits(model, test).argmax(1).numpy()
    return scored(None, y_test, predicted, trained - started, time.perf_counter() - trained, len(y_train),
                  best_epoch)
