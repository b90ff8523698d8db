"""Arrow IPC streams (.arrow), as Hugging Face datasets' ``save_to_disk`` writes them: the stream's
header gives the schema; batches are read one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc

from ...errors import BadInput, first_line
from .files import open_stream
from .reader import FileFacts, Reader


class ArrowReader(Reader):
    format = "arrow"

    def _inspect(self, filesystem: pafs.FileSystem, path: str) -> FileFacts:
        with open_stream(filesystem, path) as stream:
            return FileFacts(open_arrow(stream, path).schema, None)

    def batches(self, filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        with open_stream(filesystem, path) as stream:
            batches = iter(open_arrow(stream, path))
            while True:
                try:
                    batch = next(batches, None)
                except (OSError, pa.ArrowException) as e:   # cut short, or a message claiming more than is there
                    raise BadInput(f"{path} is a damaged Arrow IPC stream ({first_line(e)})") from None
                if batch is None:
                    return
                batch = batch.select(columns)
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)


def open_arrow(stream: pa.NativeFile, path: str) -> pa.RecordBatchReader:
    """An Arrow IPC stream (what datasets' save_to_disk writes); read batch by batch."""
    try:
        return ipc.open_stream(stream)
    except (OSError, pa.ArrowException) as e:
        raise BadInput(f"{path} is not an Arrow IPC stream ({first_line(e)})") from None
