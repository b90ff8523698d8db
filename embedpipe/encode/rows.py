"""Corpus rows -> vectors, the step every worker repeats: a batch of (id, text) rows -> a table of
(id, vector, truncated); with ``chunk_tokens``, one row per chunk (chunking.py: id, doc_id, chunk,
start, end, vector, truncated).

    >>> to_vectors = RowsToVectors(WorkerConfig(export_dir, "mean", True, 256, BatchPlan(),  # doctest: +SKIP
    ...                                         "text", "id"))
    >>> to_vectors(record_batch)   # pa.Table with columns id, vector, truncated               # doctest: +SKIP

Null or blank texts stop the run, or are left out under ``empty_text="skip"``. ``truncated`` marks
texts longer than ``max_length`` tokens, which the model sees cut. ``WorkerConfig`` is what each
worker is built from (the local runner builds one ``RowsToVectors``, every Ray actor its own: one
onnxruntime session each).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .. import checks
from ..errors import BadInput, ConfigError, CorruptArtifact, EmbedpipeError, first_line
from ..formats.columns import decoded
from ..formats.corpus import blank_text_mask, check_utf8
from ..formats.vectors import vector_array
from .batching import BatchPlan
from .chunking import Chunker, check_chunk_fields, check_window, chunk_rows
from .codec import VectorCodec
from .devices import Placement
from .encoder import TextEncoder
from .pooling import check_pooling

EMPTY_TEXT_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker (this process, or each Ray actor) needs to turn corpus rows into vectors."""

    export_dir: str             # an exported model directory (model/export.py)
    pooling: str                # a name in pooling.POOLINGS
    normalize: bool             # L2-normalize the pooled vectors
    max_length: int             # tokens per text; longer texts are truncated (and flagged)
    plan: BatchPlan             # how texts are packed into onnxruntime calls
    text_column: str
    id_column: str
    empty_text: str = "error"   # "error": stop on a null/blank text; "skip": leave the row out
    prompt: str = ""            # put before every text (the model's document prompt, as the job resolved it)
    placement: Placement | None = None  # device, backend, precision (encode/devices.py); None = onnxruntime on CPUs
    codec: VectorCodec | None = None  # truncate_dim and dtype applied before a shard is written (codec.py)
    chunk_tokens: int | None = None  # cut each text into windows of this many tokens (chunking.py); None = truncate
    chunk_overlap: int = 0      # tokens a window shares with the one before

    def __post_init__(self):
        # Checked here too, not only in EncodeJob: a runner builds one per actor, where a bad value
        # would otherwise surface as an onnxruntime or tokenizer error far from its cause.
        checks.path("export_dir", self.export_dir)
        checks.text("pooling", self.pooling)
        check_pooling(self.pooling)
        checks.boolean("normalize", self.normalize)
        checks.at_least("max_length", self.max_length, 2)
        if not isinstance(self.plan, BatchPlan):
            raise ConfigError("plan", f"must be a BatchPlan, got {type(self.plan).__name__}")
        checks.distinct_columns(("text_column", self.text_column), ("id_column", self.id_column))
        checks.one_of("empty_text", self.empty_text, EMPTY_TEXT_POLICIES)
        if not isinstance(self.prompt, str):
            raise ConfigError("prompt", f"must be a text, got {self.prompt!r}")
        if self.codec is not None and not isinstance(self.codec, VectorCodec):
            raise ConfigError("codec", f"must be a VectorCodec, got {type(self.codec).__name__}")
        check_chunk_fields(self.chunk_tokens, self.chunk_overlap)
        if self.chunk_tokens is not None:
            check_window(self.chunk_tokens, self.chunk_overlap, self.max_length)


class RowsToVectors:
    """One worker's encoder over corpus batches: decodes categorical columns, checks the texts
    (UTF-8, blanks per ``empty_text``), encodes them and flags the truncated ones."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        try:
            self.encoder = TextEncoder(config.export_dir, config.pooling, config.normalize, config.max_length,
                                       config.plan, config.prompt, config.placement)
        except EmbedpipeError:
            raise
        except Exception as e:  # onnxruntime's own types: a corrupt graph, external data outside the export
            raise CorruptArtifact(f"cannot load the encoder in {config.export_dir}: {first_line(e)}") from None
        self.chunker = None if config.chunk_tokens is None else Chunker(
            self.encoder.cut.full, config.chunk_tokens, config.chunk_overlap, config.max_length, config.prompt)

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        # The corpus readers decode categorical columns already; a batch from elsewhere may not be (a no-op if plain).
        ids = decoded(batch.column(self.config.id_column)).combine_chunks()
        texts = decoded(batch.column(self.config.text_column)).combine_chunks()
        check_utf8(ids, texts)
        blank = blank_text_mask(texts)
        if blank.true_count:
            if self.config.empty_text != "skip":
                first = ids.filter(blank)[0].as_py()
                raise BadInput(f"{blank.true_count} row(s) have a null or blank text (first id: {first!r}); "
                               "fix them or pass empty_text=skip", fields=("empty_text",))
            keep = pc.invert(blank)
            ids, texts = ids.filter(keep), texts.filter(keep)
        if self.chunker is not None:
            return chunk_rows(self.chunker, self.encoder, ids, texts.to_pylist())
        vectors, truncated = self.encoder.encode_flagging_truncation(texts.to_pylist())
        return pa.table({"id": ids, "vector": vector_array(vectors), "truncated": pa.array(truncated)})
