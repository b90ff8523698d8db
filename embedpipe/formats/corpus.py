"""Open a corpus -- parquet, JSON Lines, CSV or a Hugging Face ``save_to_disk`` directory, as a
file, a directory, a glob or a BEIR dataset folder, local or any pyarrow/fsspec URL -- check it,
and stream it as (id, text) record batches in bounded memory. Its text and id columns follow the
rules every reader shares (columns.py); categorical (dictionary) columns stream decoded.

    >>> corpus = open_corpus("wiki.parquet", text_column="text", id_column="id")   # doctest: +SKIP
    >>> corpus = open_corpus("scifact/")        # BEIR: corpus.jsonl, _id, title + " " + text  # doctest: +SKIP
    >>> corpus.rows, corpus.files, corpus.format                                 # doctest: +SKIP
    >>> for batch in corpus.iter_batches(10_000): ...                            # doctest: +SKIP

What a location is:
    a file                 its format from its name (tabular.py), or ``file_format`` to override
    a directory            its files of one format, recursively (hidden and _-prefixed ones left out)
    a glob                 ``data/*.jsonl.gz``: the files it matches
    a save_to_disk dir     state.json lists its .arrow files (a DatasetDict: name one split's directory)
    a BEIR folder          its corpus.jsonl; ids in ``_id``, title joined to text

With ``title_column`` each text is BEIR's and MTEB's ``(title + " " + text).strip()`` (a null title
counts as empty). Without an ``id`` column, BEIR's ``_id`` is the id column.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from ..errors import BadInput, EmbedpipeError, first_line
from ..storage.filesystem import resolve_filesystem
from .columns import Column, check_columns, check_ids_present, decoded, decoded_batch, invalid_utf8_rows, value_type
from .parquet import read_footer
from .tabular import FORMATS, file_batches, file_schema, format_of, split_compression

BEIR_CORPUS = ("corpus.jsonl", "corpus.jsonl.gz")
GLOB_CHARACTERS = "*?["


@dataclass
class Corpus:
    location: str              # what the user gave
    filesystem: pafs.FileSystem
    files: list[str]           # paths inside ``filesystem``, sorted
    file_rows: list[int]
    text_column: str
    id_column: str
    id_type: pa.DataType
    format: str = "parquet"    # one of tabular.FORMATS, the same for every file
    title_column: str | None = None  # joined before the text, BEIR's way

    @property
    def rows(self) -> int:
        return sum(self.file_rows)

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
                yield from self.read_file(path, batch_rows)

    def read_file(self, path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """One file's (id, text) batches, named ``id_column`` and ``text_column``; with a title
        column, the text is BEIR's title + " " + text."""
        if self.title_column is None:
            yield from self._file_batches(path, batch_rows, [self.id_column, self.text_column])
            return
        for batch in self._file_batches(path, batch_rows, [self.id_column, self.text_column, self.title_column]):
            texts = join_title(batch.column(2), batch.column(1))
            yield pa.RecordBatch.from_arrays([batch.column(0), texts], names=[self.id_column, self.text_column])

    @property
    def is_plain_parquet(self) -> bool:
        """Parquet whose text needs no joining: readable as is, with no per-row work."""
        return self.format == "parquet" and self.title_column is None

    def _file_batches(self, path: str, batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """One file's batches, dictionary (pandas categorical) columns decoded to plain values."""
        types = {self.id_column: self.id_type, self.text_column: pa.string()}
        if self.title_column:
            types[self.title_column] = pa.string()
        for batch in file_batches(self.filesystem, path, self.format, columns, batch_rows, types):
            yield decoded_batch(batch)

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
    """Find the corpus files at ``location`` and check that they hold the columns asked for."""
    location = str(location)
    if file_format is not None and file_format not in FORMATS:
        raise BadInput(f"format={file_format} is not one of {', '.join(FORMATS)}", fields=("format",))
    filesystem, path = resolve_filesystem(location)
    if isinstance(filesystem, pafs.LocalFileSystem):
        path = os.path.abspath(path)   # Ray workers read it too, from working directories of their own
    try:
        files, fmt, beir = find_files(filesystem, path, location, file_format)
    except EmbedpipeError:
        raise
    except Exception as e:  # an fsspec filesystem's own errors: no network, no credentials, no such bucket
        raise BadInput(f"cannot list corpus {location}: {type(e).__name__}: {first_line(e)}") from None
    if beir and title_column is None:
        title_column = "title"
    schema = file_schema(filesystem, files[0], fmt)
    if id_column == "id" and "id" not in schema.names and "_id" in schema.names:
        id_column = "_id"  # BEIR's and MTEB's name for it
    if beir and title_column not in schema.names:
        title_column = None  # a BEIR corpus without titles
    wanted = [Column(text_column, "text", "text_column"), Column(id_column, "id", "id_column")]
    if title_column is not None:
        wanted.append(Column(title_column, "text", "title_column"))
    file_rows, id_type = [], None
    for file in files:
        schema = schema if file == files[0] else file_schema(filesystem, file, fmt)
        if id_column in schema.names and pa.types.is_floating(value_type(schema.field(id_column).type)):
            raise BadInput(_float_id_message(filesystem, file, fmt, id_column, schema.field(id_column).type))
        check_columns(schema, file, wanted)
        # Compared decoded: a categorical id column in one file and plain strings in the next agree.
        this_type = value_type(schema.field(id_column).type)
        if id_type is not None and this_type != id_type:
            raise BadInput(f"{file}: column {id_column!r} is {this_type}, other files have {id_type}")
        id_type = this_type
        file_rows.append(count_rows(filesystem, file, fmt, id_column, id_type))
    return Corpus(location, filesystem, files, file_rows, text_column, id_column, id_type, fmt, title_column)


def _float_id_message(filesystem: pafs.FileSystem, file: str, fmt: str, id_column: str, kind: pa.DataType) -> str:
    """Why a float id column is refused, naming the first row with no usable id: a float is no id
    (1.0 and 1 would be two ids, NaN equals nothing), and pandas writes an integer column with
    missing values as float, so a NaN row is usually the cause."""
    message = f"{file}: id column {id_column!r} holds {kind}, not integers or strings"
    row = 0
    try:
        for batch in file_batches(filesystem, file, fmt, [id_column], 65_536):
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


def count_rows(filesystem: pafs.FileSystem, path: str, fmt: str, id_column: str, id_type: pa.DataType) -> int:
    """Rows of one file: its footer for parquet; for the others a pass over the id column (which
    also finds a line that is not JSON, or a ragged CSV row, before anything is encoded)."""
    if fmt == "parquet":
        return read_footer(filesystem, path, path)[1]
    return sum(b.num_rows for b in file_batches(filesystem, path, fmt, [id_column], 65_536, {id_column: id_type}))


def find_files(filesystem: pafs.FileSystem, path: str, location: str,
               file_format: str | None) -> tuple[list[str], str, bool]:
    """(files sorted by path, their format, whether ``location`` is a BEIR folder)."""
    if any(c in path for c in GLOB_CHARACTERS) and not exists(filesystem, path):
        files = glob(filesystem, path)
        if not files:
            raise BadInput(f"corpus {location} matches no files")
        return files, one_format(files, location, file_format), False
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise BadInput(f"corpus {location} does not exist")
    if info.type != pafs.FileType.Directory:
        fmt = file_format or format_of(path)
        if fmt is None:
            raise unknown_kind(location)
        return [path], fmt, False
    inside = {i.base_name: i for i in filesystem.get_file_info(pafs.FileSelector(path))}
    if "dataset_dict.json" in inside:
        splits = read_json_file(filesystem, f"{path}/dataset_dict.json").get("splits") or sorted(
            n for n, i in inside.items() if i.type == pafs.FileType.Directory)
        raise BadInput(f"{location} is a Hugging Face DatasetDict (splits: {', '.join(splits)}); "
                       f"give one split's directory, e.g. {location.rstrip('/')}/{splits[0] if splits else 'train'}")
    if "state.json" in inside and file_format in (None, "arrow"):
        state = read_json_file(filesystem, f"{path}/state.json")
        names = [f.get("filename") for f in state.get("_data_files") or []]
        if names and all(names):  # datasets' save_to_disk: its .arrow files, in the order it wrote them
            return [f"{path}/{name}" for name in names], "arrow", False
    for name in BEIR_CORPUS:
        if name in inside and file_format in (None, "jsonl"):
            return [f"{path}/{name}"], "jsonl", True
    selector = pafs.FileSelector(path, recursive=True)
    files = sorted(i.path for i in filesystem.get_file_info(selector)
                   if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))
                   and format_of(i.path, in_directory=file_format is None) is not None)
    if file_format is not None:
        files = [f for f in files if format_of(f) == file_format]
    if not files:
        what = f"{file_format} files" if file_format else "corpus files (.parquet, .jsonl, .csv, .arrow)"
        raise BadInput(f"corpus directory {location} holds no {what}")
    return files, one_format(files, location, file_format), False


def one_format(files: list[str], location: str, file_format: str | None) -> str:
    if file_format is not None:
        return file_format
    counts = Counter(format_of(f) for f in files)
    if None in counts:
        raise unknown_kind(next(f for f in files if format_of(f) is None))
    if len(counts) > 1:
        found = ", ".join(f"{counts[fmt]} {fmt}" for fmt in sorted(counts))
        choices = " or ".join(f"format={fmt}" for fmt in sorted(counts))
        raise BadInput(f"{location} holds files of more than one kind ({found}); choose with {choices}",
                       fields=("format",))
    return next(iter(counts))


def unknown_kind(path: str) -> BadInput:
    return BadInput(f"cannot tell from its name what {path} holds (.parquet, .jsonl, .csv, .arrow, each maybe "
                    f"compressed); name it with {' or '.join(f'format={f}' for f in FORMATS)}", fields=("format",))


def exists(filesystem: pafs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def glob(filesystem: pafs.FileSystem, pattern: str) -> list[str]:
    """Files matching a shell pattern (``*`` also crosses directories), listed from the deepest
    directory the pattern names without a wildcard."""
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARACTERS))
    base = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else ".")
    if not exists(filesystem, base):
        return []
    selector = pafs.FileSelector(base, recursive=True)
    found = [i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File]
    if base == ".":
        found = [p[2:] if p.startswith("./") else p for p in found]
    return sorted(p for p in found if fnmatch.fnmatchcase(p, pattern))


def read_json_file(filesystem: pafs.FileSystem, path: str) -> dict:
    try:
        with filesystem.open_input_stream(path) as f:
            value = json.loads(f.read())
    except (OSError, pa.ArrowException, ValueError) as e:
        raise BadInput(f"cannot read {path}: {first_line(e)}") from None
    return value if isinstance(value, dict) else {}
