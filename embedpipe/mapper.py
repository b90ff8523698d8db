"""The unit both runners map over a corpus: a batch of (id, text) rows -> a table of (id, vector).

    >>> mapper = CorpusBatchEncoder(MapperConfig(export_dir, "mean", True, 256, BatchPlan(), "text", "id"))
    >>> mapper(record_batch)   # pa.Table with columns id, vector

Ray builds one instance per actor (one onnxruntime session each); the local runner builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .corpus import blank_text_mask
from .encoder import BatchPlan, TextEncoder
from .errors import EmbedpipeError
from .vectors import vector_array

EMPTY_TEXT_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class MapperConfig:
    export_dir: str
    pooling: str
    normalize: bool
    max_length: int
    plan: BatchPlan
    text_column: str
    id_column: str
    empty_text: str = "error"   # "error": stop on a null/blank text; "skip": leave the row out


class CorpusBatchEncoder:
    def __init__(self, config: MapperConfig):
        self.config = config
        self.encoder = TextEncoder(config.export_dir, config.pooling, config.normalize, config.max_length,
                                   config.plan)

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        ids = batch.column(self.config.id_column).combine_chunks()
        texts = batch.column(self.config.text_column).combine_chunks()
        blank = blank_text_mask(texts)
        if blank.true_count:
            if self.config.empty_text != "skip":
                first = ids.filter(blank)[0].as_py()
                raise EmbedpipeError(f"{blank.true_count} row(s) have a null or blank text (first id: {first!r}); "
                                     "fix them or pass --empty-text skip")
            keep = pc.invert(blank)
            ids, texts = ids.filter(keep), texts.filter(keep)
        vectors = self.encoder.encode(texts.to_pylist())
        return pa.table({"id": ids, "vector": vector_array(vectors)})
