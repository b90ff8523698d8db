"""JSON Lines (.jsonl, .ndjson; .json named as a file): one JSON object a line, as BEIR's corpus.jsonl
and queries.jsonl are. Lines are parsed a block of whole lines at a time (``JSON_BLOCK_BYTES``); the
first block's fields give the schema. A line that is not a JSON object, or whose value has another
type than earlier lines gave the column, is an error naming its line (``c.jsonl line 3: not JSON``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.json as pajson

from ...errors import BadInput, first_line
from .files import MAX_LINE_BYTES, line_too_long, open_stream
from .reader import FileFacts, Reader

JSON_BLOCK_BYTES = 8 << 20  # JSON Lines are parsed this many bytes (whole lines) at a time


class JsonLinesReader(Reader):
    format = "jsonl"

    def _inspect(self, filesystem: pafs.FileSystem, path: str) -> FileFacts:
        with open_stream(filesystem, path) as stream:
            for first_line_number, block in json_blocks(stream, path):
                return FileFacts(parse_json_block(block, path, first_line_number, None).schema, None)
        return FileFacts(pa.schema([]), None)

    def batches(self, filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
        types, schema = types or {}, None
        with open_stream(filesystem, path) as stream:
            for first, block in json_blocks(stream, path):
                if schema is None:  # types from the first block, for the columns not given one
                    found = parse_json_block(block, path, first, None).schema
                    schema = pa.schema([(c, types.get(c) or json_type(found, c)) for c in columns])
                table = parse_json_block(block, path, first, schema)
                yield from table.select(columns).to_batches(max_chunksize=batch_rows)


def json_blocks(stream, where: str, block_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, bytes) of whole lines, about ``block_bytes`` (default
    ``JSON_BLOCK_BYTES``, read when called) at a time. A line longer than ``MAX_LINE_BYTES`` is an
    error naming it (``where`` line N), so memory stays bounded whatever the file holds."""
    block_bytes = block_bytes or JSON_BLOCK_BYTES
    line, pending, pending_bytes = 1, [], 0   # pending: the start of line ``line``, not ended yet
    while data := stream.read(block_bytes):
        cut = data.rfind(b"\n")
        # kept in pieces: joining on every read would copy the growing line again and again
        ends_at = pending_bytes + (data.find(b"\n") if cut >= 0 else len(data))
        if ends_at > MAX_LINE_BYTES:
            raise line_too_long(where, line)
        if cut < 0:
            pending.append(data)
            pending_bytes += len(data)
            continue
        block = b"".join([*pending, data[: cut + 1]])
        rest = data[cut + 1:]
        pending, pending_bytes = ([rest], len(rest)) if rest else ([], 0)
        yield line, block
        line += block.count(b"\n")
    tail = b"".join(pending)
    if tail.strip():
        yield line, tail


def parse_json_block(block: bytes, path: str, first_line_number: int, schema: pa.Schema | None) -> pa.Table:
    """One block of lines as a table (only ``schema``'s fields, with its types, when given)."""
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer")
    try:
        return pajson.read_json(pa.py_buffer(block), parse_options=options,
                                read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1))
    except pa.ArrowInvalid as e:
        raise json_error(block, path, first_line_number, schema, e) from None


def json_type(schema: pa.Schema, column: str) -> pa.DataType:
    """A column's type as the first block has it; string when absent there or only null."""
    if column not in schema.names or pa.types.is_null(schema.field(column).type):
        return pa.string()
    return schema.field(column).type


JSON_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
              dict: "an object"}


def json_error(block: bytes, path: str, first_line_number: int, schema: pa.Schema | None,
               error: Exception) -> BadInput:
    """The first line of the block that is not a JSON object, or whose value of a column read has
    another type than the column: named by its line in the file."""
    seen: dict[str, str] = {}  # each field's kind on the first line that has it
    for offset, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        where = f"{path} line {first_line_number + offset}"
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return BadInput(f"{where}: not JSON ({getattr(e, 'msg', None) or first_line(e)}); "
                            "a JSON Lines file holds one JSON object a line")
        if not isinstance(value, dict):
            return BadInput(f"{where}: {JSON_KINDS.get(type(value), 'a value')} where an object is expected; "
                            "a JSON Lines file holds one JSON object a line")
        for name, got in value.items():
            if got is None:
                continue
            expected = schema.field(name).type if schema is not None and name in schema.names else None
            if expected is not None and not _json_fits(got, expected):
                return BadInput(f"{where}: {name!r} is {JSON_KINDS.get(type(got), 'a value')}, where "
                                f"earlier lines hold {_arrow_kind(expected)}")
            first = seen.setdefault(name, _json_kind(got))
            if expected is None and first != _json_kind(got):
                return BadInput(f"{where}: {name!r} is {_json_kind(got)}, where earlier lines hold {first}")
    return BadInput(f"cannot read {path} (lines from {first_line_number}): {first_line(error)}")


def _json_kind(value) -> str:
    """What Arrow makes of a JSON value: integers and other numbers go together."""
    return "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else \
        JSON_KINDS.get(type(value), "a value")


def _json_fits(value, kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return isinstance(value, str)
    if pa.types.is_integer(kind):
        return isinstance(value, int) and not isinstance(value, bool)
    return True


def _arrow_kind(kind: pa.DataType) -> str:
    return "strings" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else (
        "integers" if pa.types.is_integer(kind) else str(kind))
