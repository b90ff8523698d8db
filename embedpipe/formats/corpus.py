"""Open a corpus -- parquet, JSON Lines, CSV or a Hugging Face ``save_to_disk`` directory, as a
file, a directory, a glob or a BEIR dataset folder, local or any pyarrow/fsspec URL -- check it,
and stream it as (id, text) record batches in bounded memory. Its text and id columns follow the
rules every reader shares (columns.py); categorical (dictionary) columns stream decoded.

    >>> corpus = open_corpus("wiki.parquet", text_column="text", id_column="id")   # doctest: +SKIP
    >>> corpus = open_corpus("scifact/")        # BEIR: corpus.jsonl, _id, title + " " + text  # doctest: +SKIP
    >>> corpus.rows, corpus.files, corpus.format                                 # doctest: +SKIP
    >>> for batch in corpus.iter_batches(10_000): ...                            # doctest: +SKIP
    >>> for batch in corpus.read_rows(corpus.files[0], 8192, start=100_000, stop=200_000): ...  # doctest: +SKIP

Opening one is one pass: the location's files are found (readers/locate.py: a file, a directory, a
glob, a save_to_disk directory, a BEIR folder), the reader of their format (readers/) gives each
file's columns once -- a parquet footer its row count too; other formats are counted by a pass over
the id column -- and the column rules (``CorpusColumns``, columns.py) are applied to each file.
Reading rows goes the same way: ``read_rows`` asks the file's reader for a row range (a parquet
reader reads only the row groups holding it) and decodes the batches, so callers (an encode piece)
never know a format.

With ``title_column`` each text is BEIR's and MTEB's ``(title + " " + text).strip()`` (a null title
counts as empty). Without an ``id`` column, BEIR's ``_id`` is the id column.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from ..errors import BadInput, EmbedpipeError
from ..storage.filesystem import resolve_filesystem
from .columns import Column, check_columns, check_ids_present, decoded, decoded_batch, invalid_utf8_rows, value_type
from .readers import READERS, Reader, format_of, reader_for
from .readers.files import split_compression
from .readers.locate import GLOB_CHARACTERS, locate


@dataclass
class Corpus:
    location: str              # what the user gave
    filesystem: pafs.FileSystem
    files: list[str]           # paths inside ``filesystem``, sorted
    file_rows: list[int]
    text_column: str
    id_column: str
    id_type: pa.DataType
    format: str = "parquet"    # one of readers.FORMATS, the same for every file
    title_column: str | None = None  # joined before the text, BEIR's way

    @property
    def rows(self) -> int:
        return sum(self.file_rows)

    @property
    def reader(self) -> Reader:
        return READERS[self.format]   # the name was checked when the corpus was opened

    @property
    def stem(self) -> str:
        """``corpus`` for ``data/corpus.parquet``, ``data/corpus.jsonl.gz``, ``data/corpus/`` or
        ``data/corpus/*.csv``."""
        parts = self.location.rstrip("/").split("/")
        while parts and any(c in parts[-1] for c in GLOB_CHARACTERS):
            parts.pop()
        name = split_compression(parts[-1] if parts and parts[-1] not in ("", ".") else "corpus")[0]
        stem, dot, extension = name.rpartition(".")
        return stem if dot and format_of(name) else name

    def fingerprint(self) -> str:
        """sha256 over each file's path, size, modification time and row count: changes when the
        corpus does (a file rewritten in place with the same size and rows too), without reading it."""
        digest = hashlib.sha256()
        infos = self.filesystem.get_file_info(self.files)
        for info, rows in zip(infos, self.file_rows):
            digest.update(f"{info.path}|{info.size}|{info.mtime_ns}|{rows}\n".encode())
        return digest.hexdigest()

    def file_signatures(self) -> list[dict]:
        """Each file's path, size, modification time and rows: what tells an incremental run
        which files are as they were."""
        infos = self.filesystem.get_file_info(self.files)
        return [{"path": path, "size": info.size, "mtime_ns": info.mtime_ns, "rows": rows}
                for path, info, rows in zip(self.files, infos, self.file_rows)]

    def iter_batches(self, batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of (id, text) columns -- or of ``columns`` as stored -- in file then row
        order; memory stays about one batch."""
        for path in self.files:
            if columns:
                yield from self._file_batches(path, batch_rows, columns)
            else:
                yield from self.read_rows(path, batch_rows)

    def read_rows(self, path: str, batch_rows: int, start: int = 0,
                  stop: int | None = None) -> Iterator[pa.RecordBatch]:
        """Rows [start, stop) of one file (all of it by default) as (id, text) batches of at most
        ``batch_rows`` rows, named ``id_column`` and ``text_column``; with a title column, the text is
        BEIR's title + " " + text. The file's reader finds the rows: parquet reads only the row
        groups that hold them, other formats stream from the file's start. Memory stays about one
        batch."""
        columns = [self.id_column, self.text_column] + ([self.title_column] if self.title_column else [])
        for batch in self.reader.read_rows(self.filesystem, path, columns, start, stop, batch_rows, self._types):
            batch = decoded_batch(batch)
            if self.title_column is not None:
                texts = join_title(batch.column(2), batch.column(1))
                batch = pa.RecordBatch.from_arrays([batch.column(0), texts], names=[self.id_column, self.text_column])
            yield batch

    def _file_batches(self, path: str, batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """One file's batches of ``columns``, dictionary (pandas categorical) columns decoded to plain values."""
        for batch in self.reader.batches(self.filesystem, path, columns, batch_rows, self._types):
            yield decoded_batch(batch)

    @property
    def _types(self) -> dict[str, pa.DataType]:
        """The types the columns read keep in every batch (JSON infers them per block otherwise)."""
        types = {self.id_column: self.id_type, self.text_column: pa.string()}
        if self.title_column:
            types[self.title_column] = pa.string()
        return types

    def find_bad_rows(self, batch_rows: int = 65_536, examples: int = 3) -> tuple[int, list]:
        """Count rows whose text is null or blank; return (count, a few of their ids).
        Text that is not valid UTF-8 is an error naming its ids."""
        count, found = 0, []
        for batch in self.iter_batches(batch_rows):
            check_utf8(batch.column(0), batch.column(1))
            bad = blank_text_mask(batch.column(1))
            n = pc.sum(bad).as_py() or 0
            if n:
                count += n
                found.extend(batch.column(0).filter(bad).to_pylist()[: examples - len(found)])
        return count, found

    def check_unique_ids(self, batch_rows: int = 262_144, examples: int = 3) -> np.ndarray:
        """Raise if an id is null (naming its file and row) or occurs twice (naming some); return the
        sorted int64 hashes of all ids.

        Memory is 8 bytes per row: ids are hashed batch by batch, the hashes sorted, and only ids
        whose hashes collide are compared exactly, in a second pass.
        """
        chunks = [np.empty(0, np.int64)]
        for path in self.files:
            row = 0
            for batch in self._file_batches(path, batch_rows, [self.id_column]):
                check_ids_present(batch.column(0), path, self.id_column, first_row=row)
                chunks.append(id_hashes(batch.column(0)))
                row += batch.num_rows
        hashes = np.concatenate(chunks)
        hashes.sort()
        twice = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
        if len(twice):
            counts = Counter()
            for batch in self.iter_batches(batch_rows, [self.id_column]):
                ids = batch.column(0)
                suspects = np.isin(id_hashes(ids), twice)
                counts.update(ids.filter(pa.array(suspects)).to_pylist())
            repeated = [value for value, n in counts.items() if n > 1]
            if repeated:
                shown = ", ".join(map(repr, repeated[:examples]))
                raise BadInput(f"{len(repeated)} id(s) occur more than once in {self.location} (e.g. {shown}); "
                                     f"ids in column {self.id_column!r} must be unique")
        return hashes


def id_hashes(ids: pa.Array) -> np.ndarray:
    """int64 hash of each id (Python's hash: stable within one process, which is all it is used for)."""
    return np.fromiter(map(hash, ids.to_pylist()), dtype=np.int64, count=len(ids))


def check_utf8(ids: pa.Array, texts: pa.Array, examples: int = 3) -> None:
    """Raise naming the ids of texts that are not valid UTF-8 (parquet readers do not check)."""
    bad = invalid_utf8_rows(texts)
    if bad:
        shown = ", ".join(repr(ids[i].as_py()) for i in bad[:examples])
        raise BadInput(f"{len(bad)} row(s) hold text that is not valid UTF-8 (ids: {shown}"
                       f"{', ...' if len(bad) > examples else ''}); fix or drop them in the corpus")


def blank_text_mask(texts: pa.Array) -> pa.Array:
    """True where a text is null, empty or only whitespace."""
    blank = pc.equal(pc.utf8_trim_whitespace(texts), "")
    return pc.fill_null(blank, True)


def join_title(titles: pa.Array, texts: pa.Array) -> pa.Array:
    """``(title + " " + text).strip()`` per row, as BEIR and MTEB join them; a null title counts as
    empty, a null text stays null (so it is found blank)."""
    titles = pc.fill_null(decoded(titles), "")
    joined = pc.binary_join_element_wise(titles, decoded(texts), " ")
    return pc.utf8_trim_whitespace(joined)


def open_corpus(location: str, *, text_column: str = "text", id_column: str = "id", title_column: str | None = None,
                file_format: str | None = None) -> Corpus:
    """Find the corpus files at ``location`` and check that they hold the columns asked for: each
    file's columns read once (a parquet footer gives its rows too), the column rules applied to each."""
    location = str(location)
    reader = reader_for(file_format) if file_format is not None else None  # a bad name fails before any I/O
    filesystem, path = resolve_filesystem(location)
    if isinstance(filesystem, pafs.LocalFileSystem):
        path = os.path.abspath(path)   # Ray workers read it too, from working directories of their own
    found = locate(filesystem, path, location, file_format)
    reader = reader or reader_for(found.format)
    columns, id_type, file_rows = None, None, []
    for file in found.files:
        facts = reader.inspect(filesystem, file)
        columns = columns or CorpusColumns.resolve(facts.schema, text_column, id_column, title_column, found.beir)
        this_type = columns.check(facts.schema, file, reader, filesystem)
        if id_type is not None and this_type != id_type:
            raise BadInput(f"{file}: column {columns.id!r} is {this_type}, other files have {id_type}")
        id_type = this_type
        file_rows.append(facts.rows if facts.rows is not None else
                         reader.count_rows(filesystem, file, columns.id, id_type))
    return Corpus(location, filesystem, found.files, file_rows, columns.text, columns.id, id_type, reader.format,
                  columns.title)


@dataclass(frozen=True)
class CorpusColumns:
    """The columns a corpus is read by, its defaults resolved once from the first file's columns."""

    text: str
    id: str
    title: str | None  # joined before the text, BEIR's way

    @classmethod
    def resolve(cls, schema: pa.Schema, text: str, id: str, title: str | None, beir: bool) -> CorpusColumns:
        """``_id`` (BEIR's and MTEB's name) for a default ``id`` the file lacks; a BEIR folder's
        ``title`` unless another is named, and none when its corpus has no titles (a title column
        named and missing is an error, as in any corpus)."""
        if id == "id" and "id" not in schema.names and "_id" in schema.names:
            id = "_id"
        if beir and title is None:  # BEIR's own title column, when its corpus has titles; a named one must be there
            title = "title" if "title" in schema.names else None
        return cls(text, id, title)

    def check(self, schema: pa.Schema, file: str, reader: Reader, filesystem: pafs.FileSystem) -> pa.DataType:
        """Raise naming what is wrong with one file's columns; return its id type, decoded (so a
        categorical id column in one file and plain strings in the next agree)."""
        once = len(schema.get_all_field_indices(self.id)) == 1   # missing or twice: check_columns says
        id_type = value_type(schema.field(self.id).type) if once else None
        if id_type is not None and pa.types.is_floating(id_type):
            raise BadInput(_float_id_message(reader, filesystem, file, self.id, schema.field(self.id).type))
        wanted = [Column(self.text, "text", "text_column"), Column(self.id, "id", "id_column")]
        if self.title is not None:
            wanted.append(Column(self.title, "text", "title_column"))
        check_columns(schema, file, wanted)
        return id_type


def _float_id_message(reader: Reader, filesystem: pafs.FileSystem, file: str, id_column: str, kind: pa.DataType) -> str:
    """Why a float id column is refused, naming the first row with no usable id: a float is no id
    (1.0 and 1 would be two ids, NaN equals nothing), and pandas writes an integer column with
    missing values as float, so a NaN row is usually the cause."""
    message = f"{file}: id column {id_column!r} holds {kind}, not integers or strings"
    row = 0
    try:
        for batch in reader.batches(filesystem, file, [id_column], 65_536):
            values = decoded(batch.column(0))
            missing = pc.fill_null(pc.is_nan(values), True) if pa.types.is_floating(values.type) else values.is_null()
            first = pc.index(missing, True).as_py()
            if first is not None and first >= 0:
                what = "null" if values[first].as_py() is None else "NaN"
                return (f"{message}; row {row + first} is {what} (pandas writes an integer column with missing "
                        "values as floats): give every row an id, then cast the column to int")
            row += batch.num_rows
    except (EmbedpipeError, pa.ArrowException, OSError):
        return message
    return f"{message}; cast the column to int or string"
