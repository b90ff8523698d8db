"""What every file format's reader answers: a file's columns (and its row count when the format keeps
one), its rows as record batches in bounded memory -- all of them, or a row range (an encode piece's)
-- and a small file read whole.

    >>> facts = reader_for("parquet").inspect(filesystem, "c.parquet")          # doctest: +SKIP
    >>> facts.schema.names, facts.rows                                           # doctest: +SKIP
    (['id', 'text'], 1000)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from ...errors import BadInput, first_line

COUNT_BATCH_ROWS = 65_536  # rows per batch of a counting pass (one column only)


@dataclass(frozen=True)
class FileFacts:
    schema: pa.Schema
    rows: int | None  # from metadata (a parquet footer); None: only a pass over the rows can tell


class Reader:
    """One file format. Subclasses give ``format``, ``_inspect`` and ``batches``."""

    format = ""

    def inspect(self, filesystem: pafs.FileSystem, path: str, where: str | None = None) -> FileFacts:
        """The file's columns, and its rows where the format records them; ``where`` names the file
        in messages (default: its path)."""
        where = where or path
        try:
            return self._inspect(filesystem, path)
        except FileNotFoundError:
            raise BadInput(f"{where} does not exist") from None
        except (pa.ArrowException, OSError) as e:
            raise BadInput(f"{where} is not a readable {self.format} file ({first_line(e)})") from None

    def _inspect(self, filesystem: pafs.FileSystem, path: str) -> FileFacts:
        raise NotImplementedError

    def batches(self, filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` (in that order), at most ``batch_rows`` rows each; memory
        stays about one batch. ``types`` fixes a column's type where the format infers it (JSON: so
        a later block cannot turn it from integers to strings)."""
        raise NotImplementedError

    def read_rows(self, filesystem: pafs.FileSystem, path: str, columns: list[str], start: int, stop: int | None,
                  batch_rows: int, types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        """Rows [start, stop) (``stop`` None: to the end) as ``batches`` gives them, at most
        ``batch_rows`` each. A format with no index of its rows is read from the file's start, the
        rows before ``start`` parsed and dropped, and closed as soon as ``stop`` is reached."""
        row = 0
        for batch in self.batches(filesystem, path, columns, batch_rows, types):
            lo = max(start - row, 0)
            hi = batch.num_rows if stop is None else min(stop - row, batch.num_rows)
            row += batch.num_rows
            if hi > lo:
                yield batch if (lo, hi) == (0, batch.num_rows) else batch.slice(lo, hi - lo)
            if stop is not None and row >= stop:
                return

    def count_rows(self, filesystem: pafs.FileSystem, path: str, column: str, kind: pa.DataType) -> int:
        """Rows of a file whose format keeps no count: a pass over one column (which also finds a
        line that is not JSON, or a ragged CSV row, before anything is encoded)."""
        return sum(b.num_rows for b in self.batches(filesystem, path, [column], COUNT_BATCH_ROWS, {column: kind}))

    def read_whole(self, filesystem: pafs.FileSystem, path: str, columns: list[str],
                   types: dict[str, pa.DataType], where: str) -> pa.Table:
        """A small file's ``columns`` as one table (queries, qrels, labeled data)."""
        batches = list(self.batches(filesystem, path, columns, COUNT_BATCH_ROWS, types))
        if batches:
            return pa.Table.from_batches(batches, schema=batches[0].schema)
        schema = self.inspect(filesystem, path, where).schema
        return pa.table({n: pa.array([], types.get(n) or schema.field(n).type) for n in columns})
