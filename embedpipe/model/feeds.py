"""Token id lists -> the input tensors an ONNX encoder graph takes, padded with numpy (no Python loop
over tokens). The encoders (encode/) and the int8 check at export (quantize.py) feed graphs so.

    >>> flat, starts, lengths = flatten([[101, 7, 102], [101, 102]])
    >>> pack(flat, starts, lengths, pad_id=0)["input_ids"].tolist()
    [[101, 7, 102], [101, 102, 0]]
"""

from __future__ import annotations

from itertools import chain

import numpy as np


def flatten(token_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token id lists -> (all ids in one int64 array, each row's start, each row's length)."""
    lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
    flat = np.fromiter(chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, np.cumsum(lengths) - lengths, lengths


def pack(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad_id: int,
         token_types: bool = False, position_ids: bool = False) -> dict[str, np.ndarray]:
    """Rows of a flat token array -> right-padded (B, longest) input_ids and attention_mask (and
    all-zero token_type_ids, and position_ids 0, 1, 2, ... over the real tokens, when the graph takes
    them: decoder exports do). Right padding is exact for decoders too: a causal model's real tokens
    never attend to the padding after them."""
    columns = np.arange(int(lengths.max()))
    mask = columns[None, :] < lengths[:, None]
    positions = np.minimum(starts[:, None] + columns[None, :], len(flat) - 1)
    input_ids = np.where(mask, flat[positions], pad_id)
    feeds = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
    if token_types:
        feeds["token_type_ids"] = np.zeros_like(input_ids)
    if position_ids:
        feeds["position_ids"] = np.maximum(np.cumsum(feeds["attention_mask"], axis=1) - 1, 0)
    return feeds
