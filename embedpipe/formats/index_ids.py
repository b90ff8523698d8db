"""ids.arrow: an index's row -> corpus id map, memory-mapped, so a search reads only its hits' ids.

ids.parquet (formats/index_dir.py) is the index directory's contract, and it is compressed: the
only way to the id of row r is to decode every id into RAM (~1 GB of Python strings at 10M ids,
out of reach at 1B). ids.arrow holds the same ids, in the same order, as an uncompressed Arrow IPC
file in batches of ``BATCH_ROWS``: opened with ``pa.memory_map`` nothing is read until a lookup
touches a page, and looking up k rows reads k ids. index.json names it (``ids_file``); an index
written before it existed has none and is read from ids.parquet as before.

A file is checked where that is cheap when it is opened (schema, type, the row count index.json
gives, every batch's buffer sizes): a truncated or swapped one is one ``CorruptArtifact`` line.
The offsets of a string id are checked when it is looked up, so a file altered inside (offsets
pointing outside it) is also one line, never a read past the mapping.

    >>> ids = open_ids_file(Path("corpus.index/ids.arrow"), n=1000, id_type=pa.string())   # doctest: +SKIP
    >>> ids.take(np.array([3, -1, 7]))                                                       # doctest: +SKIP
    ['doc3', 'doc7']
    >>> ids.take_each(np.array([[3, 7], [5, -1]]))                                           # doctest: +SKIP
    [['doc3', 'doc7'], ['doc5']]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import CorruptArtifact

IDS_ARROW_FILE = "ids.arrow"
BATCH_ROWS = 1 << 20   # ids per IPC batch: a string batch stays far below the 2 GiB of int32 offsets
OFFSET_TYPES = {pa.string(): np.int32, pa.binary(): np.int32, pa.large_string(): np.int64,
                pa.large_binary(): np.int64}


def write_ids_file(path: Path, ids: pa.Array | pa.ChunkedArray) -> None:
    """``ids`` as an uncompressed Arrow IPC file of one 'id' column (the caller stages and publishes it)."""
    write_mapped_table(path, pa.table({"id": ids}))


def write_mapped_table(path: Path, table: pa.Table) -> None:
    """``table`` as an uncompressed Arrow IPC file in batches of ``BATCH_ROWS`` rows, to be memory-mapped
    by ``read_mapped_table`` (ids.arrow, spans.arrow)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for start in range(0, table.num_rows, BATCH_ROWS):
            writer.write_table(table.slice(start, BATCH_ROWS).combine_chunks())   # one batch each


class IndexIds:
    """The corpus ids of an index's rows: memory-mapped batches (ids.arrow) or, for an index written
    before ids.arrow, the array read whole from ids.parquet. ``take`` reads only the rows asked for."""

    def __init__(self, chunks: list[pa.Array], id_type: pa.DataType, where: Path | None = None):
        self.chunks, self.type, self.where = chunks, id_type, where
        self._starts = np.cumsum([0] + [len(c) for c in chunks], dtype=np.int64)   # row where each chunk starts
        self._offsets: dict[int, tuple[np.ndarray, int]] = {}    # a string chunk's offsets (a view) and data size

    @classmethod
    def in_memory(cls, ids: pa.Array) -> IndexIds:
        return cls([ids], ids.type)

    def named_in(self, directory: Path) -> None:
        """Name the mapped file as in ``directory`` in errors (it was opened through another path:
        load.py's pinned read); ids read whole into memory have no file to name."""
        if self.where is not None:
            self.where = directory / self.where.name

    def __len__(self) -> int:
        return int(self._starts[-1])

    def take(self, rows: np.ndarray) -> list:
        """The ids of ``rows`` (index rows, as FAISS returns them; -1 skipped), as Python values in order."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        rows = rows[rows >= 0]
        if len(rows) and rows.max() >= len(self):
            raise CorruptArtifact(f"{self.where or 'ids'}: row {int(rows.max())} asked of {len(self)} ids")
        which = np.searchsorted(self._starts, rows, side="right") - 1
        found: list = [None] * len(rows)
        for chunk_number in np.unique(which):
            at = np.flatnonzero(which == chunk_number)
            local = rows[at] - self._starts[chunk_number]
            chunk = self.chunks[chunk_number]
            self._check_offsets(int(chunk_number), local)
            try:
                values = chunk.take(_int64_array(local)).to_pylist()
            except (UnicodeDecodeError, pa.ArrowException) as e:
                raise CorruptArtifact(f"{self.where}: an id cannot be read ({e}); rebuild the index") from None
            for position, value in zip(at.tolist(), values):
                found[position] = value
        return found

    def take_each(self, rows: np.ndarray) -> list[list]:
        """``take`` of each row of a (queries, k) matrix, in one lookup (a batch of queries' hits
        share the batches of ids they fall in)."""
        rows = np.asarray(rows, dtype=np.int64)
        flat = iter(self.take(rows))
        return [[next(flat) for _ in range(int(count))] for count in (rows >= 0).sum(axis=1)]

    def _check_offsets(self, chunk_number: int, local: np.ndarray) -> None:
        """A variable-length id's offsets must lie inside its batch's data: checked for the rows
        taken only (cheap), where Arrow's own full check would read every id of the file."""
        offset_type = OFFSET_TYPES.get(self.type)
        if self.where is None or offset_type is None:
            return
        if chunk_number not in self._offsets:
            chunk = self.chunks[chunk_number]
            _, offsets_buffer, data = chunk.buffers()
            self._offsets[chunk_number] = (np.frombuffer(offsets_buffer, dtype=offset_type)[chunk.offset:],
                                           data.size if data else 0)
        offsets, size = self._offsets[chunk_number]
        starts, ends = offsets[local], offsets[local + 1]
        if (starts < 0).any() or (ends < starts).any() or (ends > size).any():
            raise CorruptArtifact(f"{self.where} is corrupt (an id's offsets point outside its data); "
                                  "rebuild the index")

    def batches(self) -> Iterator[pa.Array]:
        """Every id, one batch at a time (at most ``BATCH_ROWS`` in memory when memory-mapped)."""
        yield from self.chunks

    def to_array(self) -> pa.Array:
        """Every id in one array in RAM: for what truly needs them all (append writes them again)."""
        return pa.concat_arrays(self.chunks) if len(self.chunks) != 1 else self.chunks[0]

    def to_pylist(self) -> list:
        """Every id as Python values (for tests and small indexes: ~100 bytes of RAM per id)."""
        return [value for chunk in self.chunks for value in chunk.to_pylist()]


def _int64_array(rows: np.ndarray) -> pa.Array:
    """``rows`` as an Arrow array without a copy (``pa.array`` of a numpy array imports pandas: 0.4 s
    of a first search)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def open_ids_file(path: Path, n: int, id_type: pa.DataType) -> IndexIds:
    """ids.arrow at ``path``, memory-mapped and checked: one 'id' column of ``id_type`` (ids.parquet's),
    ``n`` rows (index.json's)."""
    schema, batches = read_mapped_table(path)
    if schema.names != ["id"] or schema.field("id").type != id_type:
        raise CorruptArtifact(f"{path} must hold one 'id' column of type {id_type} as ids.parquet does; "
                              f"it has {schema}")
    ids = mapped_column(path, [batch.column(0) for batch in batches], id_type)
    if len(ids) != n:
        raise CorruptArtifact(f"{path} holds {len(ids)} ids, index.json says {n}: truncated or replaced; "
                              "rebuild the index")
    return ids


def read_mapped_table(path: Path) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """The schema and batches of an Arrow IPC file, memory-mapped (nothing read until a lookup touches
    a page); each batch's buffer sizes are checked against its lengths (cheap: no values read)."""
    if not path.is_file():
        raise CorruptArtifact(f"{path} is missing (index.json names it); rebuild the index")
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        for batch in batches:
            batch.validate()   # buffer sizes against lengths: O(1) a batch, reads no values
    except (OSError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read {path} (truncated or corrupt: {e}); rebuild the index") from None
    return reader.schema, batches


def mapped_column(path: Path, chunks: list[pa.Array], column_type: pa.DataType) -> IndexIds:
    """One column of a memory-mapped file, as ``IndexIds`` (its ``take`` checks the offsets of the rows
    it reads); a nested or dictionary column (rare), which has no per-row check, is checked whole now."""
    if column_type not in OFFSET_TYPES and not pa.types.is_primitive(column_type):
        for chunk in chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowException as e:
                raise CorruptArtifact(f"{path} is corrupt ({e}); rebuild the index") from None
    return IndexIds(chunks, column_type, path)
