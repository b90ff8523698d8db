"""Open a parquet corpus (a file or a directory of files, local or any pyarrow/fsspec URL),
check it, and stream it as record batches.

    >>> corpus = open_corpus("wiki.parquet", text_column="text", id_column="id")   # doctest: +SKIP
    >>> corpus.rows, corpus.files                                                # doctest: +SKIP
    >>> for batch in corpus.iter_batches(10_000): ...                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import BadInput, first_line


@dataclass
class Corpus:
    location: str              # what the user gave
    filesystem: pafs.FileSystem
    files: list[str]           # paths inside ``filesystem``, sorted
    file_rows: list[int]
    text_column: str
    id_column: str
    id_type: pa.DataType

    @property
    def rows(self) -> int:
        return sum(self.file_rows)

    @property
    def stem(self) -> str:
        """``corpus`` for ``data/corpus.parquet`` or ``data/corpus/``."""
        name = self.location.rstrip("/").rsplit("/", 1)[-1]
        return name[: -len(".parquet")] if name.endswith(".parquet") else name

    def fingerprint(self) -> str:
        """sha256 over each file's path, size, modification time and row count: changes when the
        corpus does (a file rewritten in place with the same size and rows too), without reading it."""
        digest = hashlib.sha256()
        infos = self.filesystem.get_file_info(self.files)
        for info, rows in zip(infos, self.file_rows):
            digest.update(f"{info.path}|{info.size}|{info.mtime_ns}|{rows}\n".encode())
        return digest.hexdigest()

    def iter_batches(self, batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of (id, text) columns, in file then row order; memory stays one batch
        (pages are read as needed, so a file written as one huge row group streams too)."""
        columns = columns or [self.id_column, self.text_column]
        for path in self.files:
            try:
                with self.filesystem.open_input_file(path) as f:
                    reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
                    for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
                        yield batch
            except (pa.ArrowException, OSError) as e:
                raise BadInput(f"cannot read {path}: corrupt parquet data ({first_line(e)})") from None

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
        """Raise if an id occurs twice (naming some); return the sorted int64 hashes of all ids.

        Memory is 8 bytes per row: ids are hashed batch by batch, the hashes sorted, and only ids
        whose hashes collide are compared exactly, in a second pass.
        """
        hashes = np.concatenate([id_hashes(batch.column(0)) for batch in self.iter_batches(batch_rows, [self.id_column])]
                                or [np.empty(0, np.int64)])
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
    try:
        texts.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    binary = {pa.large_string(): pa.large_binary(), pa.string_view(): pa.binary_view()}.get(texts.type, pa.binary())
    raw = texts.view(binary)
    bad = []
    for i, value in enumerate(raw.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
    shown = ", ".join(repr(ids[i].as_py()) for i in bad[:examples])
    raise BadInput(f"{len(bad)} row(s) hold text that is not valid UTF-8 (ids: {shown}"
                         f"{', ...' if len(bad) > examples else ''}); fix or drop them in the corpus")


def blank_text_mask(texts: pa.Array) -> pa.Array:
    """True where a text is null, empty or only whitespace."""
    blank = pc.equal(pc.utf8_trim_whitespace(texts), "")
    return pc.fill_null(blank, True)


def resolve_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """A path or URL -> (filesystem, path inside it). Local paths, s3://, gs://, hdfs:// via pyarrow;
    any other scheme fsspec knows (memory://, http://, az://, ...) through fsspec."""
    if "://" not in location:
        return pafs.LocalFileSystem(), str(location)
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as e:
        raise BadInput(f"cannot open {location}: no filesystem for that URL ({e})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def open_corpus(location: str, *, text_column: str = "text", id_column: str = "id") -> Corpus:
    """Find the parquet files at ``location`` and check that they hold the columns asked for."""
    location = str(location)
    filesystem, path = resolve_filesystem(location)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise BadInput(f"corpus {location} does not exist")
    if info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(path, recursive=True)
        files = sorted(i.path for i in filesystem.get_file_info(selector)
                       if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                       and not i.base_name.startswith((".", "_")))
        if not files:
            raise BadInput(f"corpus directory {location} holds no .parquet files")
    else:
        files = [path]
    file_rows, id_type = [], None
    for file in files:
        schema, rows = _read_footer(filesystem, file)
        _check_columns(schema, file, text_column, id_column)
        if id_type is not None and schema.field(id_column).type != id_type:
            raise BadInput(f"{file}: column {id_column!r} is {schema.field(id_column).type}, "
                                 f"other files have {id_type}")
        id_type = schema.field(id_column).type
        file_rows.append(rows)
    return Corpus(location, filesystem, files, file_rows, text_column, id_column, id_type)


def _read_footer(filesystem: pafs.FileSystem, file: str) -> tuple[pa.Schema, int]:
    try:
        with filesystem.open_input_file(file) as f:
            parquet = pq.ParquetFile(f)
            return parquet.schema_arrow, parquet.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise BadInput(f"{file} is not a readable parquet file ({first_line(e)})") from None


def _check_columns(schema: pa.Schema, file: str, text_column: str, id_column: str) -> None:
    names = ", ".join(schema.names)
    if text_column not in schema.names:
        raise BadInput(f"{file} has no text column {text_column!r} (columns: {names}); "
                             "name one with text_column", fields=("text_column",))
    if id_column not in schema.names:
        raise BadInput(f"{file} has no id column {id_column!r} (columns: {names}); "
                             "name one with id_column", fields=("id_column",))
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)
            or pa.types.is_string_view(text_type)):
        raise BadInput(f"{file}: text column {text_column!r} holds {text_type}, not strings")
