"""A trained probe on disk, without pickle: ``head.safetensors`` (the head's tensors) plus
``classifier.json`` (head kind, classes, the encoder spec and model hash, where it came from).

    >>> save_classifier("clf", head, classes, encoder_record, model_record, extra={...})  # doctest: +SKIP
    >>> saved = load_classifier("clf"); saved.head.kind, saved.classes                    # doctest: +SKIP

The directory is written in a staging directory and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptArtifact
from ..fsio import check_output_dir, staged_dir, write_json_atomic

FORMAT_VERSION = 1
WEIGHTS = "head.safetensors"
META = "classifier.json"
HEADS = ("linear", "mlp")


@dataclass
class Head:
    """A trained head as plain data: numpy arrays named like the layers they stand for."""

    kind: str                        # "linear" or "mlp"
    weights: dict[str, np.ndarray]   # linear: weight (C,D), bias (C,); mlp: pre_classifier.*, classifier.*


@dataclass
class SavedClassifier:
    path: Path
    head: Head
    classes: list           # class values; a head's output column i is classes[i]
    meta: dict              # everything classifier.json says

    @property
    def encoder(self) -> dict:
        return self.meta["encoder"]


def save_classifier(out: str | os.PathLike, head: Head, classes: list, encoder: dict, model: dict, *,
                    extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write the head and its metadata to ``out`` (replacing it only with ``overwrite``)."""
    from safetensors.numpy import save_file

    out = check_output_dir(out, overwrite, META)
    with staged_dir(out) as staging:
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in head.weights.items()},
                  staging / WEIGHTS)
        write_json_atomic(staging / META, {"format_version": FORMAT_VERSION, "kind": head.kind,
                                           "classes": classes, "encoder": encoder, "model": model,
                                           **(extra or {})})
    return out


def load_classifier(path: str | os.PathLike) -> SavedClassifier:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not (path / META).exists() or not (path / WEIGHTS).exists():
        raise CorruptArtifact(f"{path} is not a saved embedpipe classifier (needs {META} and {WEIGHTS}; "
                             "make one with `embedpipe classify --save-model DIR`)")
    try:
        meta = json.loads((path / META).read_text())
        kind, classes = meta["kind"], meta["classes"]
        weights = load_file(path / WEIGHTS)
    except (ValueError, KeyError, OSError, SafetensorError) as e:
        raise CorruptArtifact(f"{path}: cannot read the saved classifier ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION or kind not in HEADS:
        raise CorruptArtifact(f"{path}: unsupported classifier format {meta.get('format_version')} / head {kind!r}")
    return SavedClassifier(path, Head(kind, weights), classes, meta)
