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
        weights = load_file(path / WEIGHTS)
    except (ValueError, OSError, SafetensorError) as e:
        raise CorruptArtifact(f"{path}: cannot read the saved classifier ({e})") from None
    if not isinstance(meta, dict):
        raise CorruptArtifact(f"{path / META} is not a JSON object")
    kind, classes = meta.get("kind"), meta.get("classes")
    if meta.get("format_version") != FORMAT_VERSION or not isinstance(kind, str) or kind not in HEADS:
        raise CorruptArtifact(f"{path}: unsupported classifier format {meta.get('format_version')} / head {kind!r}")
    _check_saved(path, meta, kind, classes, weights)
    return SavedClassifier(path, Head(kind, weights), classes, meta)


# The tensors each head needs and their shapes, in letters: C classes, D input dim, H hidden width.
HEAD_TENSORS = {"linear": {"weight": "CD", "bias": "C"},
                "mlp": {"pre_classifier.weight": "HD", "pre_classifier.bias": "H",
                        "classifier.weight": "CH", "classifier.bias": "C"}}


def head_input_dim(head: Head) -> int:
    """The vector dimension a head takes (D)."""
    return int(head.weights["weight" if head.kind == "linear" else "pre_classifier.weight"].shape[1])


def _check_saved(path: Path, meta: dict, kind: str, classes, weights: dict[str, np.ndarray]) -> None:
    """Everything predict relies on, checked on load: a classifier.json edited by hand (or a head
    file from another classifier) is one line naming what disagrees, never a traceback mid-predict."""
    def bad(problem: str) -> CorruptArtifact:
        return CorruptArtifact(f"{path}: {problem}; retrain it with `embedpipe classify --save-model`")

    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)):
        raise bad(f"'classes' in {META} must be a non-empty list of strings or integers, got {classes!r:.60}")
    if len(set(classes)) != len(classes):
        raise bad(f"'classes' in {META} names a class twice")
    for key in ("encoder", "model"):
        if not isinstance(meta.get(key), dict):
            raise bad(f"'{key}' in {META} must be an object, got {meta.get(key)!r:.60}")
    sizes: dict[str, int] = {"C": len(classes)}
    for name, letters in HEAD_TENSORS[kind].items():
        tensor = weights.get(name)
        if tensor is None:
            raise bad(f"{WEIGHTS} has no tensor {name!r} (a {kind} head needs {', '.join(HEAD_TENSORS[kind])})")
        if tensor.ndim != len(letters) or not np.isfinite(tensor).all():
            raise bad(f"tensor {name!r} in {WEIGHTS} has shape {tensor.shape} or non-finite values")
        for letter, size in zip(letters, tensor.shape):
            if sizes.setdefault(letter, size) != size:
                what = f"{len(classes)} classes in {META}" if letter == "C" else "the other tensors"
                raise bad(f"tensor {name!r} in {WEIGHTS} has shape {tensor.shape}, which does not fit {what}")
