"""What a file's name says -- its format and compression -- and its bytes, decompressed as they
stream. A `.json` file is JSON Lines only when named as a file or with format=jsonl: in a directory,
.json files are the metadata files datasets ship (dataset_info.json) and are left out.

    >>> format_of("data/corpus.jsonl.gz"), compression_of("data/corpus.jsonl.gz")
    ('jsonl', 'gzip')
    >>> format_of("notes.txt") is None, format_of("d/dataset_info.json", in_directory=True) is None
    (True, True)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs

from ...errors import BadInput, first_line

FORMATS = ("parquet", "jsonl", "csv", "arrow")
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".csv": "csv", ".arrow": "arrow"}
# A line of JSON Lines, or a CSV / TSV row, holds at most this many bytes. Readers hold one line (or a
# block of whole lines) at a time, so a file cut short or never ending a line (gigabytes of NULs in
# a sparse file) is one error naming it, not memory growing with the file.
MAX_LINE_BYTES = 16 << 20
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


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


def line_too_long(where: str, line: int) -> BadInput:
    return BadInput(f"{where} line {line}: longer than {MAX_LINE_BYTES >> 20} MiB without a line break, the "
                    "limit that keeps memory bounded; is the file cut short, or not text one record a line?")


def text_lines(stream, where: str) -> Iterator[str]:
    """A stream's text lines as Python's csv module reads them (line ends kept; a UTF-8 byte-order
    mark, as Excel and Windows editors write it, dropped; undecodable bytes replaced), each at most
    ``MAX_LINE_BYTES`` long: a longer one is an error naming its line, read no further."""
    # csv's own field limit (128 KiB) would refuse a long quoted text the line limit allows.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    number = 0
    while line := text.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise line_too_long(where, number)
        yield line
