"""Frozen pooled vectors for labeled rows, through the same encoder path as ``embedpipe encode``,
cached on disk so another head (or another run) costs no re-encoding.

    >>> vectors, seconds = FeatureCache().vectors(EncoderSpec(pooling="cls"), split.train)  # doctest: +SKIP
    >>> vectors.shape            # (rows, dim) float32                                     # doctest: +SKIP

The cache key is the model's content hash, the export options, pooling, max_length, normalize, the
file's content fingerprint, the text column and the chosen rows; entries are .npz files (no pickle)
under ``$EMBEDPIPE_CACHE/features``, written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ..encode.batching import BatchPlan
from ..encode.encoder import EncoderSpec, TextEncoder, prepare, spec_record
from ..formats.vectors import encoder_identity
from ..fsio import atomic_path
from ..model.resolve import cache_root
from ..progress import Progress
from .data import Part

log = logging.getLogger("embedpipe.classify")
CHUNK = 4096  # texts per encode call: one progress step, sorted by length inside


class FeatureCache:
    """Encodes rows once per (model, pooling, max_length, normalize, file, rows); later calls load."""

    def __init__(self, root: str | os.PathLike | None = None, threads: int | None = None):
        self.root = Path(root) if root is not None else cache_root() / "features"
        self.threads = threads
        self._encoders: dict[EncoderSpec, TextEncoder] = {}

    def key(self, spec: EncoderSpec, part: Part, rows: str | None = None) -> str:
        exported, max_length = prepare(spec)
        record = {**encoder_identity(spec_record(spec, max_length), exported.info["content_hash"]),
                  "onnx": exported.info["onnx_file"], "file": part.source.fingerprint, "rows": rows or part.rows_key()}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]

    def vectors(self, spec: EncoderSpec, part: Part, what: str = "texts") -> tuple[np.ndarray, float]:
        """(rows, dim) float32 vectors for ``part`` and the seconds encoding them took (then or now).

        Rows of a file whose every row is cached already are sliced from that entry.
        """
        path = self.root / f"{self.key(spec, part)}.npz"
        whole = self.root / f"{self.key(spec, part, 'all')}.npz"
        for candidate, expected in ((path, len(part.rows)), (whole, len(part.source.texts))):
            if candidate.exists():
                with np.load(candidate, allow_pickle=False) as data:
                    vectors, seconds = data["vectors"], float(data["seconds"])
                if len(vectors) == expected:
                    log.info("%s: %d %s vectors from the feature cache", spec.pooling, len(part.rows), what)
                    if candidate == path:
                        return vectors, seconds
                    return vectors[part.rows], seconds * len(part.rows) / max(expected, 1)
        vectors, seconds = self.encode(spec, part.texts, f"{spec.pooling} {what} encoded")
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, vectors=vectors, seconds=np.float64(seconds))
        return vectors, seconds

    def encoder(self, spec: EncoderSpec) -> TextEncoder:
        if spec not in self._encoders:
            self._encoders[spec] = TextEncoder.load(spec, BatchPlan(threads=self.threads))
        return self._encoders[spec]

    def encode(self, spec: EncoderSpec, texts: list[str], desc: str) -> tuple[np.ndarray, float]:
        encoder = self.encoder(spec)
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        with Progress(len(texts), desc) as progress:
            for start in range(0, len(texts), CHUNK):
                out[start:start + CHUNK] = encoder.encode(texts[start:start + CHUNK])
                progress.update(min(CHUNK, len(texts) - start))
            seconds = progress.seconds
        return out, seconds
