"""Parquet (.parquet, .pq): the footer gives the schema and the row count in one read; pages stream
as needed, so a file written as one huge row group streams too.
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

    def count_rows(self, filesystem: pafs.FileSystem, path: str, column: str, kind: pa.DataType) -> int:
        return self.inspect(filesystem, path).rows

    def read_whole(self, filesystem: pafs.FileSystem, path: str, columns: list[str],
                   types: dict[str, pa.DataType], where: str) -> pa.Table:
        try:
            with filesystem.open_input_file(path) as f:
                return pq.read_table(f, columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise BadInput(f"cannot read {where}: corrupt parquet data ({first_line(e)})") from None
