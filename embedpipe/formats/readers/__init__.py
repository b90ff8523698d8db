"""One reader per file format, chosen by name, behind one small facade; what a location holds.

    files.py    a name's format and compression; a file's bytes, decompressed as they stream
    reader.py   what every reader answers: columns (+ rows where kept), batches, a row range (read
                from the start and skipped, unless the format can seek), a small file whole
    parquet.py  parquet: the footer read once gives schema and rows; pages stream; a row range is
                read from the row groups holding it
    jsonl.py    JSON Lines, a block of whole lines at a time; bad lines named by number
    csv.py      CSV: a header line, every value a string; ragged rows named by line
    arrow.py    Arrow IPC streams (the files of a Hugging Face save_to_disk directory)
    locate.py   a location -> its files and their one format: a file, a directory, a glob, a
                save_to_disk directory (state.json's .arrow files), a BEIR folder (corpus.jsonl)

    >>> reader_for("jsonl").format
    'jsonl'
    >>> reader_for("xlsx")
    Traceback (most recent call last):
    embedpipe.errors.BadInput: format=xlsx is not one of parquet, jsonl, csv, arrow
"""

from __future__ import annotations

from ...errors import BadInput
from .arrow import ArrowReader
from .csv import CsvReader
from .files import FORMATS, format_of
from .jsonl import JsonLinesReader
from .parquet import ParquetReader
from .reader import FileFacts, Reader

READERS: dict[str, Reader] = {r.format: r for r in (ParquetReader(), JsonLinesReader(), CsvReader(), ArrowReader())}


def reader_for(file_format: str) -> Reader:
    """The reader of a format named in FORMATS; any other name is an error listing them."""
    if file_format not in READERS:
        raise BadInput(f"format={file_format} is not one of {', '.join(FORMATS)}", fields=("format",))
    return READERS[file_format]


__all__ = ["FORMATS", "READERS", "FileFacts", "Reader", "format_of", "reader_for"]
