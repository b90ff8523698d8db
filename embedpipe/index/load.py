"""An index directory in memory, ready to search.

    >>> index = open_index("corpus.index")                    # doctest: +SKIP
    >>> scores, rows = index.search(query_vectors, k=10)      # doctest: +SKIP
    >>> index.ids_of(rows[0])                                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from ..errors import CorruptArtifact, EmbedpipeError
from ..formats.index_dir import INFO_FILE, download_index_dir, extra_files, read_faiss, read_ids, read_info
from ..fsio import is_url, local_path
from .exact_store import open_exact_store
from .params import REFINE_K_FACTOR, apply_search_params
from .refine import StoreRefined


@dataclass
class LoadedIndex:
    """An index directory in memory: the FAISS index with its search parameters set, ids and info."""

    path: Path | str            # a local directory, or the URL it was read from
    index: faiss.Index
    ids: pa.Array
    info: dict
    _id_list: list | None = field(default=None, repr=False)
    refine: StoreRefined | None = None   # the exact store that re-ranks the index's candidates, if any

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
        if self.refine is not None:
            return self.refine.search(queries, min(k, self.index.ntotal))
        distances, rows = self.index.search(queries, min(k, self.index.ntotal))
        return (distances if self.metric == "ip" else -distances), rows

    def ids_of(self, rows: np.ndarray) -> list:
        """Corpus ids of one result row (skipping -1)."""
        if self._id_list is None:
            self._id_list = self.ids.to_pylist()
        return [self._id_list[r] for r in rows if r >= 0]


def open_index(path: str | os.PathLike, *, mmap: bool = False) -> LoadedIndex:
    """Load INDEX_DIR, a local path or a URL (s3://...: its files are read into memory), checking
    index.json, index.faiss and ids.parquet against each other.

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
    if not path.is_dir():
        raise EmbedpipeError(f"index directory {path} does not exist")
    info = read_info(path)
    index = read_faiss(path, info, mmap=mmap)
    ids = read_ids(path, int(info["n"]))
    try:
        apply_search_params(index, info.get("search_params", ""))
    except RuntimeError:
        raise EmbedpipeError(f"{path / INFO_FILE}: search parameters {info.get('search_params')!r} "
                             f"do not apply to a {info['factory']} index") from None
    return LoadedIndex(path, index, ids, info, refine=_refine_of(path, index, info))


def _refine_of(path: Path, index: faiss.Index, info: dict) -> StoreRefined | None:
    """The exact store index.json names, memory-mapped and checked against the index; None without one."""
    names = extra_files(info)
    if not names:
        return None
    if not (path / names[0]).is_file():
        raise CorruptArtifact(f"{path}: the exact store {names[0]} that {INFO_FILE} names is missing; "
                              "rebuild the index")
    k_factor = (info.get("refine") or {}).get("k_factor") or REFINE_K_FACTOR
    if isinstance(k_factor, bool) or not isinstance(k_factor, int) or k_factor < 1:
        raise CorruptArtifact(f"{path / INFO_FILE}: refine k_factor {k_factor!r} is not a whole number of at least 1")
    return StoreRefined(index, open_exact_store(path / names[0]), info["metric"], k_factor)
