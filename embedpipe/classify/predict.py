"""Apply a saved probe to a parquet file of texts (the library behind ``embedpipe predict``).

    >>> summary = predict_file("clf", "new.parquet", "preds.parquet")   # doctest: +SKIP
    >>> pq.read_table("preds.parquet").column_names     # ['id', 'label', 'score']  # doctest: +SKIP

Texts are encoded exactly as the training texts were (model, pooling, normalization, max length
from classifier.json; the model's content hash must match), then the head is applied in numpy.
Output rows keep the input order: ``id`` (when the input has one), the predicted ``label`` and its
softmax ``score``. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import checks
from ..encode.devices import check_device
from ..encode.encoder import spec_from_record
from ..errors import CorruptArtifact
from ..formats.classifier import head_input_dim, load_classifier
from ..formats.labeled import read_labeled
from ..fsio import atomic_path, check_output, check_output_file
from .features import FeatureCache
from .probes import head_logits, softmax


def predict_file(model_dir: str | os.PathLike, data: str, out: str | os.PathLike, *, text_column: str = "text",
                 overwrite: bool = False, threads: int | None = None, device: str = "auto") -> dict:
    """Predict a label for every row of ``data``; write ``out`` (parquet). Returns a summary. The texts
    are encoded on ``device`` (auto, cpu, cuda, cuda:N)."""
    checks.text("text_column", text_column)
    checks.boolean("overwrite", overwrite)
    checks.at_least("threads", threads, 1, optional=True)
    check_device(device)
    out = check_output(out, {"model": model_dir, "data": data})
    saved = load_classifier(model_dir)
    check_output_file(out, overwrite)
    source = read_labeled(data, text_column, None)
    model = saved.meta.get("model") or {}
    spec = spec_from_record(saved.encoder, model.get("content_hash"), "this classifier was trained", model.get("path"))
    spec = dataclasses.replace(spec, device=device) if device != "auto" else spec
    started = time.perf_counter()
    vectors, _ = FeatureCache(threads=threads).encode(spec, source.texts, "texts encoded")
    if vectors.shape[1] != head_input_dim(saved.head):
        raise CorruptArtifact(f"{model_dir}: the head takes {head_input_dim(saved.head)}-dim vectors, the encoder it "
                              f"names makes {vectors.shape[1]}-dim ones (was classifier.json edited?)")
    probabilities = softmax(head_logits(saved.head, vectors))
    best = probabilities.argmax(axis=1)
    seconds = time.perf_counter() - started
    columns = {} if source.ids is None else {"id": source.ids}
    columns["label"] = pa.array([saved.classes[i] for i in best])
    columns["score"] = pa.array(probabilities[np.arange(len(best)), best].astype(np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(pa.table(columns), tmp)
    counts = dict(zip(*np.unique(best, return_counts=True)))
    return {"out": str(out), "rows": len(best), "seconds": round(seconds, 3),
            "texts_per_s": round(len(best) / max(seconds, 1e-9), 1),
            "label_counts": {str(saved.classes[i]): int(n) for i, n in counts.items()}}
