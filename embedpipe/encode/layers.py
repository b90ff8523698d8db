"""Many poolings x many layers (and, if asked, the last layer's token states) from ONE encoder pass.

    >>> encoder = PoolingGridEncoder.load(model=None, normalize=True, max_length=None, layers=[6, 3])  # doctest: +SKIP
    >>> pooled, tokens = encoder.encode_many(texts, [("mean", 6), ("cls", 6), ("mean", 3)], token_states=True)
    ... # doctest: +SKIP
    >>> pooled[("mean", 3)].shape, tokens.states.dtype                # (n, dim), float16  # doctest: +SKIP

Layers are hidden-state indices: 0 is the embeddings, L (the model's layer count) the last layer.
Only the last layer is wanted: the model's normal export serves (its ``last_hidden_state``, the graph
``encode`` runs). Any other layer: the all-layers export (model/export_layers.py), asked for just the
outputs needed. Every pooling of a layer is computed from the same batch of hidden states, so adding
a pooling or a layer costs a pooling (microseconds per text), not another pass through the model.
As in ``encode --pooling NAME``, each pooling replaces only the model's pooling step: the model's
document prompt goes before every text, and its modules after pooling (Dense, LayerNorm, Normalize)
apply to every (pooling, layer) vector; token states are the last layer's, hidden-size wide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, ConfigError, EmbedpipeError
from ..formats.export_dir import ExportedModel, config_value
from ..model.export_layers import ensure_layers_exported, hidden_state_output
from ..model.feeds import flatten
from ..model.resolve import resolve_model
from .batching import BatchPlan, batches
from .devices import Placement
from .encoder import EncoderSpec, TextEncoder, check_texts, placement_of, prepare_resolved
from .pooling import NEEDS_POOLER_WEIGHTS, check_pooling


def layer_count(exported: ExportedModel) -> int:
    """The model's number of transformer layers (so hidden states run 0..this)."""
    if exported.info.get("hidden_states"):
        return int(exported.info["hidden_states"]) - 1
    config = {}
    for directory in (exported.path, Path(str(exported.info.get("model_path")))):
        try:
            config = json.loads((directory / "config.json").read_text())
            break
        except (OSError, ValueError):
            continue
    layers = config_value(config, "num_hidden_layers")
    if not layers:
        raise EmbedpipeError(f"{exported.info.get('model_name')}: config.json names no layer count")
    return int(layers)


def resolve_layers(spec: str | Sequence[int], layers: int) -> list[int]:
    """``"last"``, ``"all"`` (0..L, the embeddings included) or indices (negative counts from the end,
    -1 = the last layer) -> sorted, unique hidden-state indices in 0..L."""
    if spec == "last":
        return [layers]
    if spec == "all":
        return list(range(layers + 1))
    if isinstance(spec, str):
        raise ConfigError("layers", f"must be last, all or a list of layer numbers, got {spec!r}")
    resolved = []
    for value in spec:
        index = value + layers + 1 if value < 0 else value
        if not 0 <= index <= layers:
            raise ConfigError("layers", f"{value} is out of range: the model has hidden states 0 (embeddings) .. "
                                        f"{layers} (last layer), or -1 .. -{layers + 1} from the end")
        resolved.append(index)
    return sorted(set(resolved))


@dataclass
class TokenStates:
    """Every text's token states of the last layer, float16, concatenated: text i is
    ``states[offsets[i]:offsets[i + 1]]``."""

    states: np.ndarray      # (total tokens, dim) float16
    offsets: np.ndarray     # (n + 1,) int64

    def take(self, rows: np.ndarray) -> TokenStates:
        lengths = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if len(rows) == 0:
            return TokenStates(self.states[:0], offsets)
        return TokenStates(np.concatenate([self.states[self.offsets[r]:self.offsets[r + 1]] for r in rows]), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


class PoolingGridEncoder(TextEncoder):
    """A TextEncoder that returns a grid of vectors per text, one per (pooling, layer) pair asked
    for, all from one pass of the model."""

    def __init__(self, exported: ExportedModel, normalize: bool, max_length: int, plan: BatchPlan = BatchPlan(),
                 prompt: str = "", placement: Placement | None = None):
        super().__init__(exported.path, "mean", normalize, max_length, plan, prompt, placement)
        self.layers = layer_count(exported)
        self.all_layers = bool(exported.info.get("hidden_states"))
        self.pool_weights = exported.pooler_weights() or {}

    @classmethod
    def load(cls, *, model: str | None, normalize: bool, max_length: int | None, layers: Sequence[int],
             plan: BatchPlan = BatchPlan(), device: str = "auto") -> PoolingGridEncoder:
        """The normal export when ``layers`` is only the last one; else the all-layers export (the torch
        backend, on ``device``, has every layer)."""
        exported, resolved = prepare_resolved(EncoderSpec(model=model, max_length=max_length, device=device))
        if resolved.backend == "onnx" and any(layer != layer_count(exported) for layer in layers):
            exported = ensure_layers_exported(resolve_model(model))
        return cls(exported, normalize, resolved.max_length, plan, resolved.prompt, placement_of(resolved))

    def output_name(self, layer: int) -> str:
        if layer == self.layers:
            return "last_hidden_state"
        if not self.all_layers:
            raise EmbedpipeError(f"layer {layer} needs the all-layers export; this encoder has the last layer only")
        return hidden_state_output(layer)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the texts make (after truncation), e.g. to size a token-state cache before encoding."""
        return int(sum(len(e.ids) for e in self._encodings(texts)[0]))

    def encode_many(self, texts: Sequence[str], pairs: Sequence[tuple[str, int]],
                    token_states: bool = False) -> tuple[dict[tuple[str, int], np.ndarray], TokenStates | None]:
        """{(pooling, layer): (n, dim) float32} for every pair, plus the last layer's token states when
        asked, all from one run of the graph per batch. Input order kept."""
        for pooling, _ in pairs:
            check_pooling(pooling)
            if pooling in NEEDS_POOLER_WEIGHTS and not self.pool_weights:
                raise BadInput(f"pooling {pooling!r} needs a model with a pooler layer; "
                               f"{self.exported.info['model_name']} has none")
        check_texts(texts)
        layers = sorted({layer for _, layer in pairs} | ({self.layers} if token_states else set()))
        names = [self.output_name(layer) for layer in layers]
        out = {pair: np.empty((len(texts), self.dim), dtype=np.float32) for pair in pairs}
        flat, starts, lengths = flatten(self.tokenize(texts))
        tokens = None
        if token_states:
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            tokens = TokenStates(np.empty((int(offsets[-1]), self.exported.hidden_size), dtype=np.float16), offsets)
        order = np.argsort(-lengths, kind="stable")

        def run(rows):
            feeds = self._pack(flat, starts[rows], lengths[rows])
            return rows, feeds["attention_mask"], dict(zip(layers, self.session.run(names, feeds)))

        for rows, mask, hidden in self.calls.map(run, batches(order, lengths, self.plan)):
            for pooling, layer in pairs:
                out[(pooling, layer)][rows] = self._vectors(pooling, hidden[layer], mask)
            if tokens is not None:
                last = hidden[self.layers]
                for r, row in enumerate(rows):
                    tokens.states[tokens.offsets[row]:tokens.offsets[row + 1]] = last[r, :lengths[row]]
        return out, tokens
