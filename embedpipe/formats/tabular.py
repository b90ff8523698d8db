"""The tabular file formats a corpus (and BEIR's queries) may come in, each read in bounded memory
by pyarrow: the format of a path, its schema, and its record batches.

    parquet  .parquet .pq               footers give schema and rows; pages stream
    jsonl    .jsonl .ndjson (.json)     one JSON object a line (BEIR's corpus.jsonl, queries.jsonl)
    csv      .csv                       a header line; every value is a string (CSV has no types)
    arrow    .arrow                     Arrow IPC, as Hugging Face datasets' save_to_disk writes it

Any of them may be compressed (.gz, .bz2, .zst, .lz4), decompressed as it streams. A `.json` file
is JSON Lines only when named as a file or with format=jsonl: in a directory, .json files are the
metadata files datasets ship (dataset_info.json) and are left out.

A line that is not JSON, or a CSV row with more or fewer fields than the header, is an error naming
the file and its line (``c.jsonl line 3: not JSON (...)``).

    >>> format_of("data/corpus.jsonl.gz"), compression_of("data/corpus.jsonl.gz")
    ('jsonl', 'gzip')
    >>> format_of("notes.txt") is None
    True
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..errors import BadInput, first_line

FORMATS = ("parquet", "jsonl", "csv", "arrow")
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".csv": "csv", ".arrow": "arrow"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
JSON_BLOCK_BYTES = 8 << 20  # JSON Lines are parsed this many bytes (whole lines) at a time


def split_compression(path: str) -> tuple[str, str | None]:
    """('x.jsonl', 'gzip') for 'x.jsonl.gz'; (path, None) when not compressed."""
    for suffix, codec in COMPRESSIONS.items():
        if path.lower().endswith(suffix):
            return path[: -len(suffix)], codec
    return path, None


def compression_of(path: str) -> str | None:
    return split_compression(path)[1]


def format_of(path: str, *, in_directory: bool = False) -> str | None:
    """The format a file's name says, or None. In a directory a bare .json is not taken (metadata)."""
    name = split_compression(path)[0].lower()
    for extension, fmt in EXTENSIONS.items():
        if name.endswith(extension) and not (in_directory and extension == ".json"):
            return fmt
    return None


def open_stream(filesystem: pafs.FileSystem, path: str) -> pa.NativeFile:
    """The file's bytes, decompressed as they are read when its name ends in .gz, .zst, ..."""
    try:
        return filesystem.open_input_stream(path, compression=compression_of(path), buffer_size=1 << 20)
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist") from None
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"cannot read {path}: {first_line(e)}") from None


# --- schema -------------------------------------------------------------------------------------------

def file_schema(filesystem: pafs.FileSystem, path: str, fmt: str) -> pa.Schema:
    """The columns of a file: the parquet footer, the Arrow stream's header, the CSV header (all
    strings), or the fields of the first block of JSON lines."""
    try:
        if fmt == "parquet":
            with filesystem.open_input_file(path) as f:
                return pq.ParquetFile(f).schema_arrow
        if fmt == "arrow":
            with open_stream(filesystem, path) as stream:
                return open_arrow(stream, path).schema
        if fmt == "csv":
            with open_stream(filesystem, path) as stream:
                names = csv_header(stream, path)
            return pa.schema([(name, pa.string()) for name in names])
        with open_stream(filesystem, path) as stream:
            for first_line_number, block in json_blocks(stream):
                return parse_json_block(block, path, first_line_number, None).schema
        return pa.schema([])
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist") from None
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"{path} is not a readable {fmt} file ({first_line(e)})") from None


# --- batches ------------------------------------------------------------------------------------------

def file_batches(filesystem: pafs.FileSystem, path: str, fmt: str, columns: list[str], batch_rows: int,
                 types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (in that order), at most ``batch_rows`` rows each; memory stays
    about one batch (one block of lines for JSON). ``types`` fixes a JSON column's type (so a later
    block cannot turn it from integers to strings)."""
    if fmt == "parquet":
        yield from parquet_batches(filesystem, path, columns, batch_rows)
    elif fmt == "arrow":
        with open_stream(filesystem, path) as stream:
            for batch in open_arrow(stream, path):
                batch = batch.select(columns)
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
    elif fmt == "csv":
        yield from csv_batches(filesystem, path, columns, batch_rows)
    else:
        yield from json_batches(filesystem, path, columns, batch_rows, types or {})


def parquet_batches(filesystem: pafs.FileSystem, path: str, columns: list[str],
                    batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Pages are read as needed, so a file written as one huge row group streams too."""
    try:
        with filesystem.open_input_file(path) as f:
            reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
            yield from reader.iter_batches(batch_size=batch_rows, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"cannot read {path}: corrupt parquet data ({first_line(e)})") from None


def open_arrow(stream: pa.NativeFile, path: str) -> pa.RecordBatchReader:
    """An Arrow IPC stream (what datasets' save_to_disk writes); read batch by batch."""
    try:
        return ipc.open_stream(stream)
    except pa.ArrowInvalid as e:
        raise BadInput(f"{path} is not an Arrow IPC stream ({first_line(e)})") from None


# --- CSV ----------------------------------------------------------------------------------------------

def csv_header(stream, path: str) -> list[str]:
    """The names on the first line (read as Python's csv module reads them)."""
    header = next(csv.reader(io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")), None)
    if not header:
        raise BadInput(f"{path} has no header line; a CSV corpus names its columns on its first line")
    return header


def csv_batches(filesystem: pafs.FileSystem, path: str, columns: list[str],
                batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Every value read as a string, and an empty field as null: so an id is never a number in one
    block and a string in the next, and a text "NA" stays "NA". Quoted values may hold newlines."""
    convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                   strings_can_be_null=True, null_values=[""])
    parse = pacsv.ParseOptions(newlines_in_values=True)
    read = pacsv.ReadOptions(use_threads=False, block_size=4 << 20)
    with open_stream(filesystem, path) as stream:
        try:
            for batch in pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert):
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
        except pa.ArrowInvalid as e:
            raise csv_error(filesystem, path, e) from None


def csv_error(filesystem: pafs.FileSystem, path: str, error: Exception) -> BadInput:
    """The first ragged row (more or fewer fields than the header), by its line in the file, found
    again with Python's csv module (pyarrow counts rows, not lines, and a quoted value can span lines)."""
    with open_stream(filesystem, path) as stream:
        rows = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=""))
        header = next(rows, [])
        for row in rows:
            if len(row) != len(header):
                return BadInput(f"{path} line {rows.line_num}: {len(row)} field(s) where the header has "
                                f"{len(header)}; quote values that hold commas")
    return BadInput(f"cannot read {path}: {first_line(error)}")


# --- JSON Lines ---------------------------------------------------------------------------------------

def json_blocks(stream, block_bytes: int = JSON_BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, bytes) of whole lines, about ``block_bytes`` at a time."""
    line, pending = 1, b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            break
        pending += data
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue  # a line longer than a block: read on until it ends
        block, pending = pending[: cut + 1], pending[cut + 1:]
        yield line, block
        line += block.count(b"\n")
    if pending.strip():
        yield line, pending


def parse_json_block(block: bytes, path: str, first_line_number: int, schema: pa.Schema | None) -> pa.Table:
    """One block of lines as a table (only ``schema``'s fields, with its types, when given)."""
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer")
    try:
        return pajson.read_json(pa.py_buffer(block), parse_options=options,
                                read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1))
    except pa.ArrowInvalid as e:
        raise json_error(block, path, first_line_number, schema, e) from None


def json_batches(filesystem: pafs.FileSystem, path: str, columns: list[str], batch_rows: int,
                 types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    schema = None
    with open_stream(filesystem, path) as stream:
        for first, block in json_blocks(stream):
            if schema is None:  # types from the first block, for the columns not given one
                found = parse_json_block(block, path, first, None).schema
                schema = pa.schema([(c, types.get(c) or json_type(found, c)) for c in columns])
            table = parse_json_block(block, path, first, schema)
            yield from table.select(columns).to_batches(max_chunksize=batch_rows)


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
