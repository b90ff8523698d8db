"""Reading a small table whole
(queries, qrels, labeled data) through the shared column checks: parquet, or any format of
tabular.py (BEIR's queries.jsonl) chosen by the file's name.

    >>> columns = [Column("id", "id"), Column("text", "text")]
    >>> table = read_table("q.parquet", "queries file q.parquet", columns)                    # doctest: +SKIP
    >>> table.column_names                                                                    # doctest: +SKIP
    ['id', 'text']
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import BadInput, first_line
from ..storage.filesystem import resolve_filesystem
from .columns import Column, check_columns, decoded
from .tabular import file_batches, file_schema, format_of


def read_footer(filesystem: pafs.FileSystem, path: str, where: str) -> tuple[pa.Schema, int]:
    """(arrow schema, row count) from a parquet footer, without reading any data."""
    try:
        with filesystem.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            return parquet.schema_arrow, parquet.metadata.num_rows
    except FileNotFoundError:
        raise BadInput(f"{where} does not exist") from None
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"{where} is not a readable parquet file ({first_line(e)})") from None


def read_table(location: str, where: str, columns: list[Column], optional: tuple[str, ...] = ()) -> pa.Table:
    """The given columns (checked first), and those of ``optional`` the file has, dictionary columns
    decoded. For files read whole; a corpus streams instead (corpus.py)."""
    fmt = format_of(str(location))
    if fmt not in (None, "parquet"):
        return read_other_table(location, where, columns, optional, fmt)
    filesystem, path = resolve_filesystem(location)
    schema, _ = read_footer(filesystem, path, where)
    check_columns(schema, where, columns)
    names = list(dict.fromkeys([c.name for c in columns] + [n for n in optional if n in schema.names]))
    try:
        with filesystem.open_input_file(path) as f:
            table = pq.read_table(f, columns=names)
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"cannot read {where}: corrupt parquet data ({first_line(e)})") from None
    return pa.table([decoded(table.column(n)) for n in names], names=names)


def read_other_table(location: str, where: str, columns: list[Column], optional: tuple[str, ...], fmt: str) -> pa.Table:
    """``read_table`` for JSON Lines, CSV and Arrow files."""
    filesystem, path = resolve_filesystem(location)
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        raise BadInput(f"{where} does not exist")
    schema = file_schema(filesystem, path, fmt)
    check_columns(schema, where, columns)
    names = list(dict.fromkeys([c.name for c in columns] + [n for n in optional if n in schema.names]))
    types = {c.name: pa.string() for c in columns if c.role == "text"}
    batches = list(file_batches(filesystem, path, fmt, names, 65_536, types))
    table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else \
        pa.table({n: pa.array([], schema.field(n).type) for n in names})
    return pa.table([decoded(table.column(n)) for n in names], names=names)
