"""Frozen pooled vectors for labeled rows, every requested pooling x layer from ONE encoder pass
(encode/layers.py), cached on disk so another head, pooling set or run costs no re-encoding.

    >>> got = FeatureCache().pooled(EncoderSpec(), split.train, [("cls", 6), ("mean", 6), ("mean", 3)])
    ... # doctest: +SKIP
    >>> got.vectors[("mean", 3)].shape, got.seconds     # (rows, dim) float32; the pass's seconds  # doctest: +SKIP

The cache key is the model's content hash, the export options, pooling, layer, max_length,
normalize, the file's content fingerprint, the text column and the chosen rows; each (pooling,
layer) is its own .npz entry (no pickle) under ``$EMBEDPIPE_CACHE/features``, written to a temporary
name and renamed. Only the pairs not cached yet are encoded, all in one pass. The last layer's token
states (for the attention head) are cached the same way in float16, refused with one line above a
size limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..encode.batching import BatchPlan
from ..encode.encoder import EncoderSpec, TextEncoder, prepare, prepare_resolved, spec_to_record
from ..encode.layers import PoolingGridEncoder, TokenStates, layer_count
from ..errors import BadInput
from ..formats.vectors import encoder_identity
from ..fsio import atomic_path
from ..model.resolve import cache_root
from ..progress import Progress
from .data import Part

log = logging.getLogger("embedpipe.classify")
CHUNK = 4096  # texts per encode call: one progress step, sorted by length inside


@dataclass
class Pooled:
    vectors: dict[tuple[str, int], np.ndarray]   # (pooling, layer) -> (rows, dim) float32
    seconds: float                                # the encoder pass that made them (then or now)
    tokens: TokenStates | None = None             # last layer's token states, when asked


def _check_token_size(size_mb: float, rows: int, what: str, limit_mb: float | None) -> None:
    """One line, before any encoding, when the token states (to encode or as cached) pass the limit."""
    if limit_mb is not None and size_mb > limit_mb:
        raise BadInput(f"the attention head needs the token states of {rows} {what} ({size_mb:,.3g} MB in "
                       f"float16), over the {limit_mb:,.3g} MB limit; raise --token-states-limit-mb or lower "
                       "--train-limit", fields=("token_states_limit_mb",))


class FeatureCache:
    """Encodes rows once per (model, pooling, layer, max_length, normalize, file, rows); later calls load."""

    def __init__(self, root: str | os.PathLike | None = None, threads: int | None = None):
        self.root = Path(root) if root is not None else cache_root() / "features"
        self.threads = threads
        self._encoders: dict = {}

    def key(self, spec: EncoderSpec, part: Part, rows: str | None = None, layer: int | None = None,
            tokens: bool = False) -> str:
        exported, resolved = prepare_resolved(spec)
        # the torch backend has no graph file: its precision tells its features apart (bf16 on a GPU)
        engine = exported.info["onnx_file"] or f"torch {resolved.precision}"
        record = {**encoder_identity(spec_to_record(spec, resolved.max_length), exported.info["content_hash"]),
                  "onnx": engine, "file": part.source.fingerprint, "rows": rows or part.rows_key()}
        if layer is not None:
            record["layer"] = layer
        if tokens:
            record = {**record, "pooling": None, "normalize": None, "tokens": "float16"}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]

    def last_layer(self, spec: EncoderSpec) -> int:
        return layer_count(prepare(spec)[0])

    def vectors(self, spec: EncoderSpec, part: Part, what: str = "texts") -> tuple[np.ndarray, float]:
        """(rows, dim) float32 vectors of ``spec``'s pooling at the last layer, and the encoding seconds."""
        pair = (spec.pooling, self.last_layer(spec))
        got = self.pooled(spec, part, [pair], what)
        return got.vectors[pair], got.seconds

    def _load(self, spec: EncoderSpec, part: Part, **key) -> tuple[dict, float] | None:
        """A cache entry for ``part``'s rows: its own, or sliced from an entry of the whole file."""
        path = self.root / f"{self.key(spec, part, **key)}.npz"
        whole = self.root / f"{self.key(spec, part, 'all', **key)}.npz"
        for candidate, expected in ((path, len(part.rows)), (whole, len(part.source.texts))):
            if candidate.exists():
                with np.load(candidate, allow_pickle=False) as data:
                    arrays = {name: data[name] for name in data.files}
                rows = len(arrays["offsets"]) - 1 if "offsets" in arrays else len(arrays["vectors"])
                if rows != expected:
                    continue
                seconds = float(arrays.pop("seconds"))
                if candidate == path:
                    return arrays, seconds
                share = seconds * len(part.rows) / max(expected, 1)
                if "offsets" in arrays:
                    sliced = TokenStates(arrays["states"], arrays["offsets"]).take(part.rows)
                    return {"states": sliced.states, "offsets": sliced.offsets}, share
                return {"vectors": arrays["vectors"][part.rows]}, share
        return None

    def _save(self, spec: EncoderSpec, part: Part, arrays: dict, seconds: float, **key) -> None:
        path = self.root / f"{self.key(spec, part, **key)}.npz"
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, seconds=np.float64(seconds), **arrays)

    def pooled(self, spec: EncoderSpec, part: Part, pairs: list[tuple[str, int]], what: str = "texts", *,
               token_states: bool = False, token_limit_mb: float | None = None) -> Pooled:
        """Every (pooling, layer) in ``pairs`` for ``part`` (``spec`` gives model, max_length, normalize),
        plus the last layer's float16 token states when asked; what is not cached is encoded in one pass."""
        got, seconds, missing = {}, 0.0, []
        for pooling, layer in pairs:
            entry = self._load(replace(spec, pooling=pooling), part, layer=layer)
            if entry is None:
                missing.append((pooling, layer))
            else:
                got[(pooling, layer)], seconds = entry[0]["vectors"], max(seconds, entry[1])
        tokens = None
        if token_states:
            entry = self._load(replace(spec, pooling="mean"), part, tokens=True)
            if entry is not None:
                tokens, seconds = TokenStates(entry[0]["states"], entry[0]["offsets"]), max(seconds, entry[1])
                _check_token_size(tokens.states.nbytes / 2**20, len(part.rows), what, token_limit_mb)
        if not missing and (tokens is not None or not token_states):
            log.info("%d %s: %d pooling x layer vector sets from the feature cache", len(part.rows), what, len(pairs))
            return Pooled(got, seconds, tokens)
        want_tokens = token_states and tokens is None
        encoder = self.multi_encoder(spec, [layer for _, layer in missing])
        texts = part.texts
        if want_tokens:
            megabytes = encoder.count_tokens(texts) * encoder.exported.hidden_size * 2 / 2**20
            _check_token_size(megabytes, len(texts), what, token_limit_mb)
        fresh, new_tokens, seconds = self._encode_many(encoder, texts, missing, want_tokens,
                                                       f"{len(missing) or 1} pooling x layer {what} encoded")
        for (pooling, layer), vectors in fresh.items():
            self._save(replace(spec, pooling=pooling), part, {"vectors": vectors}, seconds, layer=layer)
            got[(pooling, layer)] = vectors
        if want_tokens:
            self._save(replace(spec, pooling="mean"), part, {"states": new_tokens.states,
                                                              "offsets": new_tokens.offsets}, seconds, tokens=True)
            tokens = new_tokens
        return Pooled(got, seconds, tokens)

    def multi_encoder(self, spec: EncoderSpec, layers: list[int]) -> PoolingGridEncoder:
        last = self.last_layer(spec)
        all_layers = any(layer != last for layer in layers)
        key = (spec.model, spec.normalize, spec.max_length, all_layers, spec.device)
        if key not in self._encoders:
            self._encoders[key] = PoolingGridEncoder.load(model=spec.model, normalize=spec.normalize,
                                                        max_length=spec.max_length, layers=layers or [last],
                                                        plan=BatchPlan(threads=self.threads), device=spec.device)
        return self._encoders[key]

    def _encode_many(self, encoder: PoolingGridEncoder, texts: list[str], pairs, tokens: bool, desc: str):
        out = {pair: np.empty((len(texts), encoder.dim), dtype=np.float32) for pair in pairs}
        pieces = []
        with Progress(len(texts), desc) as progress:
            for start in range(0, len(texts), CHUNK):
                chunk, states = encoder.encode_many(texts[start:start + CHUNK], pairs, token_states=tokens)
                for pair, vectors in chunk.items():
                    out[pair][start:start + CHUNK] = vectors
                if states is not None:
                    pieces.append(states)
                progress.update(min(CHUNK, len(texts) - start))
            seconds = progress.seconds
        joined = None
        if tokens:
            offsets = [np.zeros(1, dtype=np.int64)]
            for piece in pieces:
                offsets.append(piece.offsets[1:] + offsets[-1][-1])
            joined = TokenStates(np.concatenate([p.states for p in pieces]), np.concatenate(offsets))
        return out, joined, seconds

    def encoder(self, spec: EncoderSpec) -> TextEncoder:
        if spec not in self._encoders:
            self._encoders[spec] = TextEncoder.load(spec, BatchPlan(threads=self.threads))
        return self._encoders[spec]

    def encode(self, spec: EncoderSpec, texts: list[str], desc: str) -> tuple[np.ndarray, float]:
        """``spec``'s vectors for ``texts``, not cached (what predict applies a saved probe to)."""
        encoder = self.encoder(spec)
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        with Progress(len(texts), desc) as progress:
            for start in range(0, len(texts), CHUNK):
                out[start:start + CHUNK] = encoder.encode(texts[start:start + CHUNK])
                progress.update(min(CHUNK, len(texts) - start))
            seconds = progress.seconds
        return out, seconds
