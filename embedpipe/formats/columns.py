"""The column rules every embedpipe parquet reader applies (corpus, labeled data, BEIR queries and
qrels), so that a file one command takes, the others take too.

    text column  string, large_string, string_view, or those dictionary-encoded (pandas categorical)
    id column    integers or strings (dictionary-encoded too); never nested, never null
    missing      "FILE has no text column 'body' (columns: id, text); name one with text_column"

Dictionary columns are decoded when read (``decoded``): everything downstream sees plain values.

    >>> schema = pa.schema([("id", pa.list_(pa.int64())), ("text", pa.dictionary(pa.int8(), pa.string()))])
    >>> check_columns(schema, "c.parquet", [Column("text", "text", "text_column")])   # accepted
    >>> check_columns(schema, "c.parquet", [Column("id", "id", "id_column")])
    Traceback (most recent call last):
    ...
    embedpipe.errors.BadInput: c.parquet: id column 'id' holds list<item: int64>, not integers or strings
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInput


@dataclass(frozen=True)
class Column:
    """A column a reader needs."""

    name: str                 # its name in the file
    role: str                 # "text", "id", "label", "relevance": picks the type rule, words the messages
    field: str | None = None  # the config field that names another column; None where a format fixes it


def value_type(kind: pa.DataType) -> pa.DataType:
    """The type of the values as embedpipe handles them: a dictionary column's value type, and
    ``string`` for ``string_view`` (a layout, not other values; pyarrow 17-21 cannot filter it);
    any other type as it is."""
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return pa.string() if pa.types.is_string_view(kind) else kind


def _is_plain(kind: pa.DataType) -> bool:
    return not pa.types.is_dictionary(kind) and not pa.types.is_string_view(kind)


def is_text_type(kind: pa.DataType) -> bool:
    kind = value_type(kind)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def is_id_type(kind: pa.DataType) -> bool:
    """Integers or strings: values that compare, hash and print as themselves (a float id would
    print 1.0 for 1, and a list or struct has no single value to look up)."""
    return pa.types.is_integer(value_type(kind)) or is_text_type(kind)


TYPE_RULES = {"text": (is_text_type, "not strings"), "id": (is_id_type, "not integers or strings")}


def check_columns(schema: pa.Schema, where: str, columns: list[Column]) -> None:
    """Raise naming the first column that is missing (all are looked for before any type is), occurs
    twice, or holds a type its role does not allow. ``where`` starts each message: a path, or
    ``queries file q.parquet``."""
    present = ", ".join(schema.names) or "none"
    for column in columns:
        if column.name not in schema.names:
            hint = f"; name one with {column.field}" if column.field else ""
            raise BadInput(f"{where} has no {column.role} column {column.name!r} (columns: {present}){hint}",
                           fields=(column.field,) if column.field else ())
    for column in columns:
        if len(schema.get_all_field_indices(column.name)) > 1:
            raise BadInput(f"{where} has more than one column named {column.name!r}")
        kind = schema.field(column.name).type
        allowed, expected = TYPE_RULES.get(column.role, (None, ""))
        if allowed is not None and not allowed(kind):
            raise BadInput(f"{where}: {column.role} column {column.name!r} holds {kind}, {expected}")


def decoded(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Plain values of a dictionary-encoded or string_view column (``value_type``); any other
    column as it is."""
    return values if _is_plain(values.type) else values.cast(value_type(values.type))


def decoded_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    if all(_is_plain(kind) for kind in batch.schema.types):
        return batch
    return pa.RecordBatch.from_arrays([decoded(c) for c in batch.columns], names=batch.schema.names)


def first_null(values: pa.Array | pa.ChunkedArray) -> int | None:
    """Row of the first null value, or None."""
    return pc.index(pc.is_null(values), True).as_py() if values.null_count else None


def check_ids_present(ids: pa.Array | pa.ChunkedArray, where: str, column: str, first_row: int = 0) -> None:
    """Raise naming the row (counted from ``first_row``) of the first null id."""
    row = first_null(ids)
    if row is not None:
        raise BadInput(f"{where}: id column {column!r} is null at row {first_row + row} "
                       f"({ids.null_count} null(s) in all); every row needs an id")


def invalid_utf8_rows(texts: pa.Array | pa.ChunkedArray) -> list[int]:
    """Rows whose text is not valid UTF-8 (parquet readers do not check, and Python's decode of such a
    value raises far from the file it came from)."""
    texts = decoded(texts)
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    try:
        texts.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    binary = {pa.large_string(): pa.large_binary(), pa.string_view(): pa.binary_view()}.get(texts.type, pa.binary())
    bad = []
    for row, value in enumerate(texts.view(binary).to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(row)
    return bad
