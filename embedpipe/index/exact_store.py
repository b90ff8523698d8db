"""The exact store: an index's vectors at higher precision, on local disk, memory-mapped, in index order
(row i = the index's id i), to re-rank an index's top candidates without holding every vector in RAM.

    write_exact_store(path, batches, dtype)  stream rows into one ``.npy`` file (tmp + rename); -> a record
    append_exact_store(path, batches)        rows added at the end (an appended index), row count last
    open_exact_store(path)                   -> ExactStore: .rows .dim .dtype .disk_bytes
    ExactStore.vectors(ids)                  the rows, dequantized to float32
    ExactStore.rescore(queries, cands, k)    exact scores of each query's candidates, best first

The file is a plain ``.npy`` (``np.load(path, mmap_mode="r")`` opens it). float32 and float16 hold the
vectors as they are; int8 and uint8 hold codes, and ``float ~= code * scale + offset`` per dimension, with
``offset`` and ``scale`` (float32, one per dimension; 0 and 1 when not given) in ``NAME.scale.npy``
beside it (row 0 offset, row 1 scale). Scores follow LoadedIndex.search: higher is better, the inner
product for "ip" and the negated squared L2 distance for "l2".

    >>> record = write_exact_store(Path("exact.npy"), shard_batches, "float16")   # doctest: +SKIP
    >>> store = open_exact_store(Path("exact.npy"))                               # doctest: +SKIP
    >>> scores, ids = store.rescore(queries, candidate_ids, k=10, metric="ip")    # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import BadInput, CorruptArtifact, EmbedpipeError
from ..fsio import atomic_path

DTYPES = ("float32", "float16", "int8", "uint8")
METRICS = ("ip", "l2")
# The .npy header is written first with room for any shape, then rewritten in place with the row count
# once every batch is in: the rows stream to disk once, never all in memory. numpy accepts any header
# length; a multiple of 64 keeps the rows aligned as numpy's own writer does.
_HEADER_BYTES = 128
# rescore works through the queries in chunks whose gathered candidate rows take at most this much.
_RESCORE_CHUNK_BYTES = 64 << 20


def scale_path(path: Path) -> Path:
    """``exact.npy`` -> ``exact.scale.npy``: the per-dimension offset and scale of an integer store."""
    return path.with_name(f"{path.stem}.scale.npy")


def _header(dtype: np.dtype, rows: int, dim: int) -> bytes:
    body = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, dim)})
    prefix = b"\x93NUMPY\x01\x00"
    room = _HEADER_BYTES - len(prefix) - 2 - 1  # the 2-byte header length, the closing newline
    if len(body) > room:
        raise BadInput(f"an exact store of {rows} x {dim} is too large to describe")
    text = (body.ljust(room) + "\n").encode("latin1")
    return prefix + len(text).to_bytes(2, "little") + text


def _quantization(dtype: str, dim: int, offset, scale) -> tuple[np.ndarray, np.ndarray] | None:
    """The checked (offset, scale) of an integer store (0 and 1 when not given); None for floats."""
    if dtype not in ("int8", "uint8"):
        if offset is not None or scale is not None:
            raise BadInput(f"offset and scale apply to int8 and uint8 exact stores, not {dtype}")
        return None
    checked = []
    for name, value, default in (("offset", offset, 0.0), ("scale", scale, 1.0)):
        array = np.full(dim, default, np.float32) if value is None else np.asarray(value)
        if array.shape != (dim,) or not np.issubdtype(array.dtype, np.number):
            raise BadInput(f"exact store {name} must be {dim} numbers (one per dimension), got shape {array.shape}")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise BadInput(f"exact store {name} holds non-finite values")
        checked.append(array)
    return checked[0], checked[1]


def _codes(batch: np.ndarray, dtype: np.dtype, quant: tuple[np.ndarray, np.ndarray] | None,
           first_row: int) -> np.ndarray:
    """One batch in the store's dtype: floats cast (float16 must not overflow) or quantized, integer
    codes checked against the dtype's range."""
    where = f"exact store rows {first_row}..{first_row + len(batch) - 1}"
    if np.issubdtype(batch.dtype, np.integer) and quant is not None:
        info = np.iinfo(dtype)
        if batch.size and (batch.min() < info.min or batch.max() > info.max):
            raise BadInput(f"{where} hold codes outside {dtype.name}'s range {info.min}..{info.max}")
        return batch.astype(dtype)
    if not (np.issubdtype(batch.dtype, np.floating) or np.issubdtype(batch.dtype, np.integer)):
        raise BadInput(f"{where} are {batch.dtype}, not numbers")
    if not np.isfinite(batch).all():
        raise BadInput(f"{where} hold NaN or infinite values")
    if quant is None:
        with np.errstate(over="ignore"):  # an overflow is refused just below, in words
            out = batch.astype(dtype)
        if not np.isfinite(out).all():
            raise BadInput(f"{where} hold values beyond {dtype.name}'s range (largest {np.abs(batch).max():g})")
        return out
    offset, scale = quant
    safe = np.where(scale == 0, 1.0, scale).astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.rint((batch - offset) / safe), info.min, info.max).astype(dtype)


def write_exact_store(path: str | os.PathLike, batches: Iterable[np.ndarray], dtype: str, *,
                      offset=None, scale=None) -> dict:
    """Write the rows of ``batches`` (each (n, dim), in index order) to ``path``, a ``.npy`` file.

    Float batches are cast to ``dtype`` or, for int8 / uint8, quantized as ``rint((x - offset) / scale)``
    clipped to the dtype's range; integer batches for an integer store are taken as codes. Nothing is
    visible at ``path`` until every row is on disk. Returns the record index.json keeps:
    ``{"dtype", "rows", "dim", "bytes", "file", "scale_file"}`` (``scale_file`` None for float stores).
    """
    path = Path(path)
    if dtype not in DTYPES:
        raise BadInput(f"exact store dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    np_dtype = np.dtype(dtype)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"\0" * _HEADER_BYTES)
            rows, dim, quant = _write_rows(f, batches, np_dtype, 0, None,
                                           lambda d: _quantization(dtype, d, offset, scale))
            if dim is None:
                raise BadInput("an exact store needs at least one batch of vectors (none were given)")
            f.seek(0)
            f.write(_header(np_dtype, rows, dim))
        if quant is not None:  # beside it first: the .npy appearing is what makes the store complete
            with atomic_path(scale_path(path)) as scale_tmp, open(scale_tmp, "wb") as f:
                np.save(f, np.stack(quant))
    return _record(path, np_dtype, rows, dim, quant is not None)


def append_exact_store(path: str | os.PathLike, batches: Iterable[np.ndarray]) -> dict:
    """Add rows at the end of the store at ``path`` (an index grown by an append), quantized with its
    own offset and scale. The rows go to disk first and the header's row count last: a write cut
    short leaves the store as it was (the bytes past its rows are ignored, and cut off next time).
    Returns the store's new record."""
    store = open_exact_store(path)
    if store.header_bytes != _HEADER_BYTES:
        raise BadInput(f"exact store {store.path} has a {store.header_bytes}-byte header, not the "
                       f"{_HEADER_BYTES} bytes write_exact_store writes; rewrite it to append")
    np_dtype, dim, quant = store._codes.dtype, store.dim, store._quant
    rows = store.rows
    del store
    with open(path, "r+b") as f:
        f.truncate(_HEADER_BYTES + rows * dim * np_dtype.itemsize)
        f.seek(0, os.SEEK_END)
        rows, _, _ = _write_rows(f, batches, np_dtype, rows, dim, lambda d: quant)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        f.write(_header(np_dtype, rows, dim))
        f.flush()
        os.fsync(f.fileno())
    return _record(Path(path), np_dtype, rows, dim, quant is not None)


def _write_rows(f, batches: Iterable[np.ndarray], np_dtype: np.dtype, rows: int, dim: int | None, quant_for):
    """Write each batch's codes to ``f``; -> (rows in all, dim, the quantization used)."""
    quant = quant_for(dim) if dim is not None else None
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim != 2:
            raise BadInput(f"exact store batches must be (rows, dim) arrays, got shape {batch.shape}")
        if dim is None:
            if batch.shape[1] < 1:
                raise BadInput("exact store vectors must have at least one dimension")
            dim = batch.shape[1]
            quant = quant_for(dim)
        elif batch.shape[1] != dim:
            raise BadInput(f"exact store rows {rows}.. have dimension {batch.shape[1]}, earlier rows {dim}")
        np.ascontiguousarray(_codes(batch, np_dtype, quant, rows)).tofile(f)
        rows += len(batch)
    return rows, dim, quant


def _record(path: Path, np_dtype: np.dtype, rows: int, dim: int, scaled: bool) -> dict:
    files = [path] + ([scale_path(path)] if scaled else [])
    return {"dtype": np_dtype.name, "rows": rows, "dim": dim, "bytes": sum(p.stat().st_size for p in files),
            "file": path.name, "scale_file": scale_path(path).name if scaled else None}


class ExactStore:
    """An exact store opened memory-mapped: only the rows asked for are read from disk."""

    def __init__(self, path: Path, codes: np.ndarray, quant: tuple[np.ndarray, np.ndarray] | None):
        self.path, self._codes, self._quant = path, codes, quant

    def record(self) -> dict:
        """What write_exact_store returned for this store: index.json's exact_store."""
        return _record(self.path, self._codes.dtype, self.rows, self.dim, self._quant is not None)

    @property
    def header_bytes(self) -> int:
        return self._codes.offset

    @property
    def rows(self) -> int:
        return self._codes.shape[0]

    @property
    def dim(self) -> int:
        return self._codes.shape[1]

    @property
    def dtype(self) -> str:
        return self._codes.dtype.name

    @property
    def disk_bytes(self) -> int:
        files = [self.path] + ([scale_path(self.path)] if self._quant is not None else [])
        return sum(p.stat().st_size for p in files)

    def _read(self, sorted_ids: np.ndarray) -> np.ndarray:
        """Rows at sorted, unique, in-range ids as float32 (forward reads for the page cache)."""
        block = np.asarray(self._codes[sorted_ids], dtype=np.float32)
        if self._quant is not None:
            offset, scale = self._quant
            block = block * scale + offset
        return block

    def _check_ids(self, ids: np.ndarray, what: str) -> np.ndarray:
        if not np.issubdtype(ids.dtype, np.integer):
            raise EmbedpipeError(f"{what} must be integer row ids, got {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        valid = ids[ids != -1] if what == "candidates" else ids  # -1: no candidate
        if valid.size and (valid.min() < 0 or valid.max() >= self.rows):
            bad = valid[(valid < 0) | (valid >= self.rows)][0]
            raise EmbedpipeError(f"{what} name row {bad}; the exact store {self.path} holds rows 0..{self.rows - 1}")
        return ids

    def vectors(self, ids) -> np.ndarray:
        """The vectors at ``ids`` (any order, repeats allowed) as float32 (len(ids), dim)."""
        ids = self._check_ids(np.asarray(ids).reshape(-1), "ids")
        unique, inverse = np.unique(ids, return_inverse=True)
        return self._read(unique)[inverse]

    def rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int,
                metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of each query's candidate rows, its best ``k`` first: (scores float32 (nq, k),
        ids int64 (nq, k)). A candidate -1 is none; a repeated candidate counts once; a query with fewer
        than ``k`` candidates is padded with id -1 and score -inf."""
        queries = np.asarray(queries)
        candidates = np.asarray(candidates)
        if metric not in METRICS:
            raise EmbedpipeError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise EmbedpipeError(f"k must be a whole number of at least 1, got {k!r}")
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise EmbedpipeError(f"queries have shape {queries.shape}; the exact store holds vectors of "
                                 f"dimension {self.dim}")
        if candidates.ndim != 2 or candidates.shape[0] != queries.shape[0]:
            raise EmbedpipeError(f"candidates have shape {candidates.shape}; expected one row per query "
                                 f"({queries.shape[0]})")
        queries = queries.astype(np.float32, copy=False)
        if not np.isfinite(queries).all():
            raise EmbedpipeError("queries hold NaN or infinite values")
        candidates = self._check_ids(candidates, "candidates")
        nq, c = candidates.shape
        scores, ids = np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        step = max(1, _RESCORE_CHUNK_BYTES // max(1, c * self.dim * 4))
        for start in range(0, nq, step):
            chunk = slice(start, min(nq, start + step))
            scores[chunk], ids[chunk] = self._rescore_chunk(queries[chunk], candidates[chunk], k, metric)
        return scores, ids

    def _rescore_chunk(self, queries: np.ndarray, candidates: np.ndarray, k: int,
                       metric: str) -> tuple[np.ndarray, np.ndarray]:
        candidates = _drop_repeats(candidates)
        valid = candidates >= 0
        unique = np.unique(candidates[valid])
        if not unique.size:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        gathered = self._read(unique)[np.searchsorted(unique, np.where(valid, candidates, unique[0]))]
        if metric == "ip":
            exact = np.matmul(gathered, queries[:, :, None])[:, :, 0]
        else:
            exact = -np.square(gathered - queries[:, None, :]).sum(axis=2)
        exact = np.where(valid, exact, -np.inf).astype(np.float32)
        # best first; among equal scores the lower row id first, so results do not depend on candidate order
        order = np.lexsort((np.where(valid, candidates, np.iinfo(np.int64).max), -exact), axis=1)[:, :k]
        top_scores = np.take_along_axis(exact, order, axis=1)
        top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
        pad = k - top_scores.shape[1]
        if pad > 0:
            top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
        return top_scores, top_ids


def _drop_repeats(candidates: np.ndarray) -> np.ndarray:
    """Each row's candidates with a repeated id replaced by -1 (the first occurrence kept)."""
    if candidates.shape[1] < 2:
        return candidates
    order = np.argsort(candidates, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    repeat = np.zeros_like(ranked, dtype=bool)
    repeat[:, 1:] = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
    if not repeat.any():
        return candidates
    out = candidates.copy()
    np.put_along_axis(out, order, np.where(repeat, -1, ranked), axis=1)
    return out


def open_exact_store(path: str | os.PathLike) -> ExactStore:
    """Open the exact store at ``path`` memory-mapped, checked against its dtype and scale file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"exact store {path} does not exist")
    try:
        codes = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CorruptArtifact(f"exact store {path} cannot be read as a .npy array (truncated or corrupt: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if codes.ndim != 2 or codes.dtype.name not in DTYPES or codes.dtype.byteorder == ">" \
            or not codes.flags.c_contiguous or codes.shape[1] < 1:
        raise CorruptArtifact(f"exact store {path} holds {codes.dtype} {codes.shape}, not (rows, dim) rows "
                              f"of {', '.join(DTYPES)}")
    quant = None
    if codes.dtype.name in ("int8", "uint8"):
        side = scale_path(path)
        try:
            pair = np.load(side, allow_pickle=False)
        except (ValueError, OSError):
            raise CorruptArtifact(f"exact store {path} holds {codes.dtype} codes but its offset and scale "
                                  f"{side.name} are missing or unreadable") from None
        if pair.shape != (2, codes.shape[1]) or pair.dtype != np.float32 or not np.isfinite(pair).all():
            raise CorruptArtifact(f"{side} holds {pair.dtype} {pair.shape}, not the float32 offset and scale "
                                  f"(2, {codes.shape[1]}) of {path.name}")
        quant = (pair[0], pair[1])
    return ExactStore(path, codes, quant)
