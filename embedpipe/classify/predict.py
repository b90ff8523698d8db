"""Apply a saved probe to a parquet file of texts (the library behind ``embedpipe predict``).

    >>> summary = predict_file("clf", "new.parquet", "preds.parquet")
    >>> pq.read_table("preds.parquet").column_names     # ['id', 'label', 'score']

Texts are encoded exactly as the training texts were (model, pooling, normalization, max length
from classifier.json; the model's content hash must match), then the head is applied in numpy.
Output rows keep the input order: ``id`` (when the input has one), the predicted ``label`` and its
softmax ``score``. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..encoder import recorded_spec
from ..errors import EmbedpipeError
from .data import read_labeled
from .features import FeatureCache
from .probes import head_logits, softmax
from .saved import load_classifier


def predict_file(model_dir: str | os.PathLike, data: str, out: str | os.PathLike, *, text_column: str = "text",
                 overwrite: bool = False, threads: int | None = None) -> dict:
    """Predict a label for every row of ``data``; write ``out`` (parquet). Returns a summary."""
    saved = load_classifier(model_dir)
    out = Path(out)
    if out.exists() and not overwrite:
        raise EmbedpipeError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise EmbedpipeError(f"{out} is a directory; give a file name for the predictions")
    source = read_labeled(data, text_column, None)
    spec = recorded_spec(saved.encoder, saved.meta.get("model", {}).get("content_hash"), "this classifier was trained")
    started = time.perf_counter()
    vectors, _ = FeatureCache(threads=threads).encode(spec, source.texts, "texts encoded")
    probabilities = softmax(head_logits(saved.head, vectors))
    best = probabilities.argmax(axis=1)
    seconds = time.perf_counter() - started
    columns = {} if source.ids is None else {"id": source.ids}
    columns["label"] = pa.array([saved.classes[i] for i in best])
    columns["score"] = pa.array(probabilities[np.arange(len(best)), best].astype(np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(pa.table(columns), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    counts = dict(zip(*np.unique(best, return_counts=True)))
    return {"out": str(out), "rows": len(best), "seconds": round(seconds, 3),
            "texts_per_s": round(len(best) / max(seconds, 1e-9), 1),
            "label_counts": {str(saved.classes[i]): int(n) for i, n in counts.items()}}
