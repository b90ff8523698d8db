"""A small table read whole (queries, qrels, labeled data) through the column rules every reader
shares (columns.py): parquet, or any other format readers/ reads (BEIR's queries.jsonl), chosen by
the file's name.

    >>> columns = [Column("id", "id"), Column("text", "text")]
    >>> table = read_table("q.parquet", "queries file q.parquet", columns)                    # doctest: +SKIP
    >>> table.column_names                                                                    # doctest: +SKIP
    ['id', 'text']
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import BadInput
from ..storage.filesystem import resolve_filesystem
from .columns import Column, check_columns, decoded
from .readers import format_of, reader_for


def read_table(location: str, where: str, columns: list[Column], optional: tuple[str, ...] = ()) -> pa.Table:
    """The given columns (checked first), and those of ``optional`` the file has, dictionary columns
    decoded; ``where`` names the file in messages. For files read whole; a corpus streams instead
    (corpus.py)."""
    filesystem, path = resolve_filesystem(location)
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        raise BadInput(f"{where} does not exist")
    reader = reader_for(format_of(str(location)) or "parquet")
    schema = reader.inspect(filesystem, path, where).schema
    check_columns(schema, where, columns)
    names = list(dict.fromkeys([c.name for c in columns] + [n for n in optional if n in schema.names]))
    types = {c.name: pa.string() for c in columns if c.role == "text"}
    table = reader.read_whole(filesystem, path, names, types, where)
    return pa.table([decoded(table.column(n)) for n in names], names=names)
