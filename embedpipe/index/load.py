"""An index directory in memory, ready to search.

    >>> index = open_index("corpus.index")                    # doctest: +SKIP
    >>> scores, rows = index.search(query_vectors, k=10)      # doctest: +SKIP
    >>> index.ids_of(rows[0])                                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import CorruptArtifact, EmbedpipeError
from ..formats.index_dir import INFO_FILE, download_index_dir, extra_files, open_ids, read_faiss, read_info
from ..formats.index_ids import IndexIds
from ..formats.index_spans import IndexSpans, open_spans
from ..fsio import is_url, local_path
from .compact import open_compact_index
from .exact_store import open_exact_store
from .params import REFINE_K_FACTOR, apply_search_params
from .refine import StoreRefined

PUBLISH_WAIT_S = 5.0   # how long a reader waits out a publish (the moment between its two renames)


def _read_one_version(path: Path, mmap: bool) -> tuple[dict, faiss.Index, IndexIds, IndexSpans | None]:
    """index.json, index.faiss, the ids and any spans of one published version of ``path``, while an append
    or a rebuild may publish another: the directory is opened once and every file read through that
    handle (``/proc/self/fd``), so all come from the same directory even if it is swapped meanwhile.
    A published directory is never changed in place, only replaced, so one directory is one version.
    A file of it deleted before it was read (the swap's cleanup) means another version is in place:
    read again. Without /proc (not Linux), the path is read as it is."""
    deadline = time.monotonic() + PUBLISH_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            if time.monotonic() < deadline and path.parent.is_dir() and any(
                    p.name.startswith(f".{path.name}.") for p in path.parent.iterdir()):  # mid-publish
                time.sleep(0.02)
                continue
            raise EmbedpipeError(f"index directory {path} does not exist") from None
        try:
            pinned = Path(f"/proc/self/fd/{fd}")
            pinned = pinned if pinned.is_dir() else path
            try:
                info = read_info(pinned)
                index = (open_compact_index(pinned, info, mmap=mmap) if info.get("compact")
                         else read_faiss(pinned, info, mmap=mmap))
                ids = open_ids(pinned, info)     # ids.arrow stays mapped: a later swap cannot change it
                spans = open_spans(pinned, info)   # over chunks: mapped like the ids
                for mapped in (ids, spans):   # a lookup's error names the file as the user would
                    if mapped is not None:
                        mapped.named_in(path)
                return info, index, ids, spans
            except (EmbedpipeError, FileNotFoundError) as e:
                # A file checked, then gone before it was read (the swap's cleanup deleting this version
                # between a check and a read) is another version in place too: read again.
                if pinned == path or _same_directory(path, fd) or time.monotonic() > deadline:
                    if isinstance(e, FileNotFoundError):
                        raise CorruptArtifact(f"{path}: {Path(e.filename or '?').name} is missing") from None
                    raise type(e)(str(e).replace(str(pinned), str(path))) from None   # named as the user named it
        finally:
            os.close(fd)


def _same_directory(path: Path, fd: int) -> bool:
    """Whether ``path`` still is the directory open as ``fd`` (no publish replaced it since)."""
    try:
        now, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


@dataclass
class LoadedIndex:
    """An index directory in memory: the FAISS index with its search parameters set, ids (memory-mapped
    from ids.arrow: ``ids_of`` reads only the rows asked for) and info."""

    path: Path | str            # a local directory, or the URL it was read from
    index: faiss.Index
    ids: IndexIds
    info: dict
    refine: StoreRefined | None = None   # the exact store that re-ranks the index's candidates, if any
    spans: IndexSpans | None = None      # over chunks: each row's typed doc id and span (spans.arrow)

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def metric(self) -> str:
        return self.info["metric"]

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (n_queries, k); higher score = better (negated squared L2 for l2).

        Rows are -1 where the index returned fewer than k hits.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise EmbedpipeError(f"query vectors have shape {queries.shape}; the index {self.path} holds "
                                 f"vectors of dimension {self.dim}")
        if k < 1:
            raise EmbedpipeError(f"k must be at least 1, got {k}")
        if self.info.get("compact"):   # compact codes, rescored: scores come oriented (compact.py)
            return self.index.search(queries, k)
        if self.refine is not None:
            return self.refine.search(queries, min(k, self.index.ntotal))
        distances, rows = self.index.search(queries, min(k, self.index.ntotal))
        return (distances if self.metric == "ip" else -distances), rows

    def ids_of(self, rows: np.ndarray) -> list:
        """Corpus ids of one result row (skipping -1)."""
        return self.ids.take(rows)

    def ids_of_each(self, rows: np.ndarray) -> list[list]:
        """``ids_of`` each row of ``search``'s (queries, k) rows, looked up together."""
        return self.ids.take_each(rows)


def open_index(path: str | os.PathLike, *, mmap: bool = False) -> LoadedIndex:
    """Load INDEX_DIR, a local path or a URL (s3://...: its files are read into memory), checking
    index.json, index.faiss and the ids against each other. The ids are memory-mapped from ids.arrow
    whatever ``mmap`` says (an index written before it reads ids.parquet whole).

    ``mmap``: map the index file instead of reading it (formats/index_dir.py, MMAP_FLAGS): a large
    index opens in milliseconds and only the pages searches touch are read; for searching only
    (a local index: one at a URL is read whole). An index with an exact store (index.json's
    exact_store) re-ranks its candidates from that store, memory-mapped either way."""
    if is_url(path) and local_path(path) is None:
        with tempfile.TemporaryDirectory(prefix="embedpipe-index-") as local:
            loaded = open_index(download_index_dir(str(path), Path(local)))
        loaded.path = str(path)
        return loaded
    path = local_path(path)
    info, index, ids, spans = _read_one_version(path, mmap)
    if info.get("compact"):
        return LoadedIndex(path, index, ids, info, spans=spans)
    try:
        apply_search_params(index, info.get("search_params", ""))
    except RuntimeError:
        raise EmbedpipeError(f"{path / INFO_FILE}: search parameters {info.get('search_params')!r} "
                             f"do not apply to a {info['factory']} index") from None
    return LoadedIndex(path, index, ids, info, refine=_refine_of(path, index, info), spans=spans)


def _refine_of(path: Path, index: faiss.Index, info: dict) -> StoreRefined | None:
    """The exact store index.json names, memory-mapped and checked against the index; None without one."""
    names = extra_files(info)
    if not names or not info.get("exact_store"):   # extra files without a store: on-disk lists (ondisk.py)
        return None
    if not (path / names[0]).is_file():
        raise CorruptArtifact(f"{path}: the exact store {names[0]} that {INFO_FILE} names is missing; "
                              "rebuild the index")
    k_factor = (info.get("refine") or {}).get("k_factor") or REFINE_K_FACTOR
    if isinstance(k_factor, bool) or not isinstance(k_factor, int) or k_factor < 1:
        raise CorruptArtifact(f"{path / INFO_FILE}: refine k_factor {k_factor!r} is not a whole number of at least 1")
    return StoreRefined(index, open_exact_store(path / names[0]), info["metric"], k_factor)
