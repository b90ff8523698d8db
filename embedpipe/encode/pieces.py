"""The unit of work of an encode run: a piece is a row range of one corpus file, and becomes one
shard, written by whichever worker encodes it, straight to the output's filesystem. Its rows come
from the corpus (``Corpus.read_rows``); nothing here knows a file format.

    >>> plan = plan_pieces(corpus, files=[0, 1], piece_rows=100_000, first_number=0)   # doctest: +SKIP
    >>> receipt = ShardWriter(config, corpus, staging).encode(plan[0], "a1b2c3d4")  # doctest: +SKIP
    >>> receipt["file"], receipt["rows"], receipt["sha256"], receipt["node_id"]                  # doctest: +SKIP

A piece's shard is named ``part-NNNNN-ATTEMPT.parquet``: unique per piece (NNNNN, its shard number)
and per attempt (a fresh token for every try), so two tries of one piece (a task retried after its
node died, while the first try still runs somewhere) never write the same file. When the shard is
complete its worker writes a receipt beside it, ``part-NNNNN-ATTEMPT.json``: what the manifest will
say of it (rows, sha256, truncated rows, the Ray node that wrote it, the row range it holds). Only
the driver's manifest makes shards part of the result; receipts tell a rerun which pieces are done,
so it encodes only the rest, whatever killed the run before.

Resuming needs no ids: a piece is identified by (file, row range). Only rows of corpus files that
changed under a published output are filtered by id, and only against the ids of the published
shards cut from those same files.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..formats.corpus import Corpus
from ..formats.vectors import TRUNCATED_KEY, vectors_from_column
from ..storage.store import Store
from .chunking import chunked_documents
from .codec import VectorCodec
from .rows import RowsToVectors, WorkerConfig

SHARD = re.compile(r"^part-(\d{5,})-([0-9a-f]{8})\.parquet$")
RECEIPT = re.compile(r"^part-(\d{5,})-([0-9a-f]{8})\.json$")


@dataclass(frozen=True)
class Piece:
    number: int          # its shard number in the output
    file: str            # a corpus file (path inside the corpus filesystem)
    start: int           # first row of the range, in that file
    stop: int            # one past its last row
    filter_known: bool = False   # the file changed under a published output: leave out ids already encoded

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def source(self) -> dict:
        return {"file": self.file, "start": self.start, "stop": self.stop}


def new_attempt() -> str:
    return uuid.uuid4().hex[:8]


def shard_file(number: int, attempt: str) -> str:
    return f"part-{number:05d}-{attempt}.parquet"


def receipt_file(number: int, attempt: str) -> str:
    return f"part-{number:05d}-{attempt}.json"


def plan_pieces(corpus: Corpus, files: list[int], piece_rows: int, first_number: int,
                filter_known: set[int] = frozenset()) -> list[Piece]:
    """Cut the corpus files numbered ``files`` into pieces of at most ``piece_rows`` rows, in
    corpus order, numbered from ``first_number``. A piece never spans two files."""
    pieces = []
    for f in files:
        for start in range(0, corpus.file_rows[f], piece_rows):
            pieces.append(Piece(first_number + len(pieces), corpus.files[f], start,
                                min(start + piece_rows, corpus.file_rows[f]), f in filter_known))
    return pieces


class ShardWriter:
    """A piece -> its shard and receipt in ``staging``: reads the piece's rows a window at a time
    (``Corpus.read_rows``: the corpus's reader finds the range, whatever the format), encodes them
    (RowsToVectors) and writes the vectors. One per Ray actor (one onnxruntime session), or one in
    the driver for the local runner."""

    def __init__(self, config: WorkerConfig, corpus: Corpus, staging: str, *, dtype: str = "float32",
                 window: int = 8192):
        self.to_vectors = RowsToVectors(config)
        self.config, self.corpus, self.dtype, self.window = config, corpus, dtype, window
        self.staging = Store.at(staging)
        self.node_id: str | None = None   # the Ray node this runs on, recorded in receipts (runners/ray_pool.py)

    def ready(self) -> str | None:
        """``node_id``; answering at all means the encoder loaded (the Ray pool's first call)."""
        return self.node_id

    def encode(self, piece: Piece, attempt: str, known_ids: pa.Array | None = None,
               on_rows: Callable[[int], None] | None = None) -> dict:
        """Encode ``piece`` into ``part-NNNNN-ATTEMPT.parquet``, then write its receipt; return it.
        A piece whose rows are all left out (known ids, blank texts) gets a receipt and no shard.
        ``on_rows`` hears of each window of the piece's rows once it is encoded (progress)."""
        name = shard_file(piece.number, attempt)
        rows = truncated = skipped_known = documents = 0
        with ExitStack() as files:
            stream = writer = None
            try:
                for batch in self.corpus.read_rows(piece.file, self.window, piece.start, piece.stop):
                    source_rows = batch.num_rows
                    if piece.filter_known and known_ids is not None and len(known_ids):
                        keep = pc.invert(pc.is_in(batch.column(0), value_set=known_ids))
                        skipped_known += batch.num_rows - (pc.sum(keep).as_py() or 0)
                        batch = batch.filter(keep)
                    table = self.to_vectors(batch)
                    if on_rows is not None:
                        on_rows(source_rows)
                    if not table.num_rows:
                        continue
                    vectors = table.column("vector")
                    columns = {"vector": vectors}
                    if self.dtype != "float32" or self.config.codec is not None:
                        codec = self.config.codec or VectorCodec(self.dtype)   # truncate_dim, int8, bits (+ rescore)
                        columns = codec.columns(vectors_from_column(vectors))
                    # Chunk rows keep doc_id, chunk, start, end (chunking.py) between the id and the vector.
                    out = table.drop_columns(["truncated"]).set_column(table.schema.get_field_index("vector"),
                                                                       "vector", columns.pop("vector"))
                    for name, column in columns.items():   # the rescoring vectors kept beside bits
                        out = out.append_column(name, column)
                    documents += chunked_documents(table)
                    if writer is None:
                        stream = files.enter_context(self.staging.open_output(name))
                        writer = pq.ParquetWriter(stream, out.schema)
                    writer.write_table(out)
                    rows += out.num_rows
                    truncated += int(table.column("truncated").to_numpy(zero_copy_only=False).sum())
            except BaseException:
                if writer is not None:
                    writer.is_open = False   # the upload is dropped; no footer to write when collected
                raise
            if writer is not None:
                writer.add_key_value_metadata({TRUNCATED_KEY: str(truncated)})
                writer.close()
        receipt = {"number": piece.number, "attempt": attempt, "file": name if rows else None, "rows": rows,
                   "sha256": stream.sha256 if rows else None, "truncated_rows": truncated, "node_id": self.node_id,
                   "source": piece.source(), "skipped_known": skipped_known,
                   "skipped_blank": piece.rows - skipped_known - documents,
                   **({"documents": documents} if self.config.chunk_tokens is not None else {})}
        self.staging.write_json(receipt_file(piece.number, attempt), receipt)
        return receipt
