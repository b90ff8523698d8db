"""CSV (.csv): a header line names the columns; every value is a string (CSV has no types), an empty
field is null. A row with more or fewer fields than the header is an error naming its line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from ...errors import BadInput, first_line
from .files import MAX_LINE_BYTES, open_stream, text_lines
from .reader import FileFacts, Reader


class CsvReader(Reader):
    format = "csv"

    def _inspect(self, filesystem: pafs.FileSystem, path: str) -> FileFacts:
        with open_stream(filesystem, path) as stream:
            names = csv_header(stream, path)
        return FileFacts(pa.schema([(name, pa.string()) for name in names]), None)

    def batches(self, filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        """Every value read as a string, whatever ``types`` says, and an empty field as null: so an id
        is never a number in one block and a string in the next, and a text "NA" stays "NA". Quoted
        values may hold newlines."""
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                       strings_can_be_null=True, null_values=[""])
        parse = pacsv.ParseOptions(newlines_in_values=True)
        # A row must fit in one block (Arrow's rule), so the block is the line limit every line reader keeps.
        read = pacsv.ReadOptions(use_threads=False, block_size=MAX_LINE_BYTES)
        with open_stream(filesystem, path) as stream:
            try:
                for batch in pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert):
                    for start in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(start, batch_rows)
            except pa.ArrowInvalid as e:
                raise csv_error(filesystem, path, e) from None


def csv_header(stream, path: str) -> list[str]:
    """The names on the first line (read as Python's csv module reads them, a byte-order mark dropped)."""
    try:
        header = next(csv.reader(text_lines(stream, path)), None)
    except csv.Error as e:
        raise BadInput(f"{path} line 1: {e}") from None
    if not header:
        raise BadInput(f"{path} has no header line; a CSV corpus names its columns on its first line")
    return header


def csv_error(filesystem: pafs.FileSystem, path: str, error: Exception) -> BadInput:
    """The first ragged row (more or fewer fields than the header), by its line in the file, found
    again with Python's csv module (pyarrow counts rows, not lines, and a quoted value can span lines);
    or the first line or field too long to hold in memory."""
    with open_stream(filesystem, path) as stream:
        rows = csv.reader(text_lines(stream, path))
        try:
            header = next(rows, [])
            for row in rows:
                if len(row) != len(header):
                    return BadInput(f"{path} line {rows.line_num}: {len(row)} field(s) where the header has "
                                    f"{len(header)}; quote values that hold commas")
        except csv.Error as e:  # a quoted value never closed, a field past the limit
            return BadInput(f"{path} line {rows.line_num}: {e}")
    return BadInput(f"cannot read {path}: {first_line(error)}")
