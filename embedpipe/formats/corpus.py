"""Open a parquet corpus (a file or a directory of files, local or any pyarrow/fsspec URL),
check it, and stream it as record batches. Its text and id columns follow the rules every reader
shares (columns.py); categorical (dictionary) columns stream decoded.

    >>> corpus = open_corpus("wiki.parquet", text_column="text", id_column="id")   # doctest: +SKIP
    >>> corpus.rows, corpus.files                                                # doctest: +SKIP
    >>> for batch in corpus.iter_batches(10_000): ...                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import BadInput, first_line
from .columns import Column, check_columns, check_ids_present, decoded_batch, invalid_utf8_rows, value_type
from .parquet import read_footer, resolve_filesystem


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
        for path in self.files:
            yield from self._file_batches(path, batch_rows, columns or [self.id_column, self.text_column])

    def _file_batches(self, path: str, batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """One file's batches, dictionary (pandas categorical) columns decoded to plain values."""
        try:
            with self.filesystem.open_input_file(path) as f:
                reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
                for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
                    yield decoded_batch(batch)
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
    wanted = [Column(text_column, "text", "text_column"), Column(id_column, "id", "id_column")]
    for file in files:
        schema, rows = read_footer(filesystem, file, file)
        check_columns(schema, file, wanted)
        # Compared decoded: a categorical id column in one file and plain strings in the next agree.
        this_type = value_type(schema.field(id_column).type)
        if id_type is not None and this_type != id_type:
            raise BadInput(f"{file}: column {id_column!r} is {this_type}, other files have {id_type}")
        id_type = this_type
        file_rows.append(rows)
    return Corpus(location, filesystem, files, file_rows, text_column, id_column, id_type)
