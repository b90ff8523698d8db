"""Parquet (.parquet, .pq): the footer gives the schema and the row count in one read; pages stream
as needed, so a file written as one huge row group streams too. A row range (an encode piece) is
read from the row groups that hold it only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ...errors import BadInput, first_line
from .reader import FileFacts, Reader


class ParquetReader(Reader):
    format = "parquet"

    def _inspect(self, filesystem: pafs.FileSystem, path: str) -> FileFacts:
        with filesystem.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            return FileFacts(parquet.schema_arrow, parquet.metadata.num_rows)

    def batches(self, filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        try:
            with filesystem.open_input_file(path) as f:
                reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
                yield from reader.iter_batches(batch_size=batch_rows, columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise BadInput(f"cannot read {path}: corrupt parquet data ({first_line(e)})") from None

    def read_rows(self, filesystem: pafs.FileSystem, path: str, columns: list[str], start: int, stop: int | None,
                  batch_rows: int, types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        """Rows [start, stop) read from the row groups that hold them (the footer says which), so a
        piece late in a large file costs its own row groups, not the file's start."""
        try:
            with filesystem.open_input_file(path) as f:
                reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
                stop = reader.metadata.num_rows if stop is None else stop
                groups, first_row, row = [], None, 0
                for g in range(reader.metadata.num_row_groups):
                    n = reader.metadata.row_group(g).num_rows
                    if row + n > start and row < stop:
                        groups.append(g)
                        first_row = row if first_row is None else first_row
                    row += n
                if not groups:
                    return
                row = first_row
                for batch in reader.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
                    lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
                    row += batch.num_rows
                    if hi > lo:
                        yield batch if (lo, hi) == (0, batch.num_rows) else batch.slice(lo, hi - lo)
                    if row >= stop:
                        return
        except (pa.ArrowException, OSError) as e:
            raise BadInput(f"cannot read {path}: corrupt parquet data ({first_line(e)})") from None

    def count_rows(self, filesystem: pafs.FileSystem, path: str, column: str, kind: pa.DataType) -> int:
        return self.inspect(filesystem, path).rows

    def read_whole(self, filesystem: pafs.FileSystem, path: str, columns: list[str],
                   types: dict[str, pa.DataType], where: str) -> pa.Table:
        try:
            with filesystem.open_input_file(path) as f:
                return pq.read_table(f, columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise BadInput(f"cannot read {where}: corrupt parquet data ({first_line(e)})") from None
