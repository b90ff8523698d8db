"""Indexes over compact codes, rescored from higher-precision vectors kept on disk.

    binary / ubinary vectors  -> a FAISS binary index over the sign bits (BFlat, BIVF<nlist>, BHNSW<M>),
                                 Hamming distance; 1 bit per dimension in RAM
    int8 / uint8 vectors      -> a scalar-quantized index (SQ8): 1 byte per dimension in RAM

Search takes ``rescore_multiplier`` x k candidates from the compact index, then (by default) ranks them by
their exact scores against the float query, reading only those rows from the exact store
(index/exact_store.py, memory-mapped): the rescoring vectors are the int8 codes themselves, or those of
``rescore_from`` (an earlier float or int8 encode of the same corpus, same encoder), needed for bits.
This is sentence-transformers' "binary retrieval + rescoring". index.json reports ``memory_bytes`` (the
compact index, held in RAM) apart from ``disk_bytes`` (the exact store, read a few rows per query).

    >>> info = build_compact_index(vectors, Path("idx"), IndexConfig(), started)   # doctest: +SKIP
    >>> index = open_compact_index(Path("idx"), info)                               # doctest: +SKIP
    >>> scores, rows = index.search(float_queries, k=10)                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import BadInput, CorruptArtifact, EmbedpipeError
from ..formats.codes import PACKED, QUANTIZED, bytes_per_vector, ranges_from_record, sign_bits
from ..formats.index_dir import FORMAT_VERSION, IDS_FILE, INDEX_FILE, INFO_FILE
from ..formats.index_ids import IDS_ARROW_FILE, write_ids_file
from ..formats.index_spans import SPANS_FILE, SPANS_KEY, write_spans_file
from ..formats.vectors import VectorSet, identity_of, open_vectors
from ..fsio import staged_dir, write_json_atomic
from ..progress import Progress
from .choose import parse_size
from .exact_store import open_exact_store, write_exact_store
from .params import RECALL_K, ExactTopK, recall_at_k
from .source import check_row_count, concat_ids, source_record
from .spans import spans_in_index_order

log = logging.getLogger("embedpipe.index")

EXACT_FILE = "exact.npy"
BINARY_FLAT_MAX_ROWS = 2_000_000   # auto: exact Hamming search up to here (~50 ms a query at 48 bytes), then BIVF
SQ_FACTORY = "SQ8"
_BINARY = re.compile(r"^(BFlat|BIVF(\d+)|BHNSW(\d+))$")
TRAIN_ROWS = 65_536


def compact_factory(requested: str, dtype: str, n: int, dim: int, max_memory: int) -> str:
    """The factory for codes of ``dtype``: a binary one for bits, SQ8 for int8/uint8; ``auto`` picks a
    binary flat index, IVF beyond BINARY_FLAT_MAX_ROWS; one over ``max_memory`` is refused."""
    need = n * bytes_per_vector(dim, dtype)
    if need > max_memory:
        raise BadInput(f"{n:,} {dtype} vectors of dimension {dim} take {need:,} bytes, more than max_memory "
                       f"{max_memory:,}", fields=("max_memory",))
    if dtype in PACKED:
        if requested == "auto":
            return "BFlat" if n <= BINARY_FLAT_MAX_ROWS else f"BIVF{int(4 * np.sqrt(n))}"
        if not _BINARY.match(requested):
            raise BadInput(f"{dtype} vectors need a binary index: BFlat, BIVF<nlist> or BHNSW<M>, not "
                           f"{requested!r}", fields=("factory",))
        return requested
    if requested not in ("auto", SQ_FACTORY):
        raise BadInput(f"{dtype} vectors are indexed with factory {SQ_FACTORY} (1 byte per dimension), not "
                       f"{requested!r}; encode float32 vectors for other factories", fields=("factory",))
    return SQ_FACTORY


def _binary_search_params(factory: str) -> str:
    match = _BINARY.match(factory)
    if match.group(2):
        return f"nprobe={max(1, int(match.group(2)) // 16)}"
    return "efSearch=128" if match.group(3) else ""


def _rescore_source(vectors: VectorSet, rescore_from: str | None) -> VectorSet:
    """The vectors the exact store is written from: ``rescore_from`` (checked: same encoder, same rows)
    or, for int8/uint8, the codes themselves."""
    if rescore_from is None:
        kept = vectors.rescore_vectors()   # kept beside the bits by encode (rescore_dtype)
        if kept is not None:
            return kept
        if vectors.dtype in PACKED:
            raise BadInput(f"{vectors.dtype} vectors are rescored from higher-precision vectors: pass rescore_from "
                           "(a float or int8 encode of the same corpus) or rescore=false",
                           fields=("rescore_from", "rescore"))
        return vectors
    source = open_vectors(rescore_from, verify=True)
    if source.dtype in PACKED:
        raise BadInput(f"rescore_from {rescore_from} holds {source.dtype} vectors; rescoring needs float or int8 "
                       "vectors", fields=("rescore_from",))
    mine, theirs = identity_of(vectors.manifest), identity_of(source.manifest)
    changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if changed or source.dim != vectors.dim or source.rows != vectors.rows:
        why = (f"{', '.join(changed)} differ" if changed
               else f"{source.rows} x {source.dim} vs {vectors.rows} x {vectors.dim}")
        raise BadInput(f"rescore_from {rescore_from} was not encoded like {vectors.path} ({why}); encode the same "
                       "corpus with the same model and truncate_dim", fields=("rescore_from",))
    return source


def _store_batches(source: VectorSet, ids: list[pa.Array], batch_rows: int):
    """The source's rows as the store takes them (codes for int8/uint8), checked to follow ``ids``."""
    position = 0
    flat_ids = pa.concat_arrays(ids) if ids else pa.array([])
    for batch_ids, batch in source.iter_batches(batch_rows, codes=source.dtype in QUANTIZED):
        expected = flat_ids.slice(position, len(batch_ids))
        if not batch_ids.equals(expected):
            raise BadInput(f"the rows of {source.path} are not in the order of the indexed vectors (encode both "
                           "from the same corpus with the same rows_per_shard)", fields=("rescore_from",))
        position += len(batch_ids)
        yield batch


def _store_scale(source: VectorSet) -> dict:
    """offset / scale for an int8/uint8 exact store so that float = code * scale + offset
    (the middle of each step, as codes.dequantize reads them)."""
    if source.dtype not in QUANTIZED:
        return {}
    ranges = ranges_from_record(source.compact.get("ranges"))
    steps = (ranges[1] - ranges[0]) / 255
    steps = np.where(steps == 0, 1, steps).astype(np.float32)
    shift = 128.5 if source.dtype == "int8" else 0.5
    return {"offset": (ranges[0] + shift * steps).astype(np.float32), "scale": steps}


def build_compact_index(vectors: VectorSet, out: Path, config, started: float) -> dict:
    """Index the compact codes of ``vectors`` into ``out`` (with an exact store unless ``config.rescore``
    is off); returns what index.json holds."""
    dtype, n, dim = vectors.dtype, vectors.rows, vectors.dim
    max_memory = parse_size(config.max_memory)
    factory = compact_factory(config.factory, dtype, n, dim, max_memory)
    source = _rescore_source(vectors, config.rescore_from) if config.rescore else None
    binary = dtype in PACKED
    if binary:
        index = faiss.index_binary_factory(dim, factory)
    else:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT if config.metric == "ip"
                                    else faiss.METRIC_L2)
    log.info("index for %d %s vectors of dimension %d: %s%s", n, dtype, dim, factory,
             f", rescored from {source.path}" if source is not None else "")
    ids: list[pa.Array] = []
    seen = 0
    with Progress(n, "vectors added") as progress:
        for batch_ids, batch in vectors.iter_batches(config.add_batch_rows, codes=binary):
            batch = sign_bits(batch, dtype) if binary else batch
            if not index.is_trained:
                index.train(batch[:TRAIN_ROWS])
            index.add(batch)
            ids.append(batch_ids)
            seen += len(batch)
            progress.update(len(batch))
    check_row_count(vectors, seen)
    id_column = concat_ids(ids, vectors)
    with staged_dir(out) as staging:
        (faiss.write_index_binary if binary else faiss.write_index)(index, str(staging / INDEX_FILE))
        pq.write_table(pa.table({"id": id_column}), staging / IDS_FILE)
        write_ids_file(staging / IDS_ARROW_FILE, id_column)
        spans = spans_in_index_order(vectors, id_column)
        if spans is not None:
            write_spans_file(staging / SPANS_FILE, spans)
        store = None
        if source is not None:
            store = write_exact_store(staging / EXACT_FILE, _store_batches(source, ids, config.add_batch_rows),
                                      source.dtype, **_store_scale(source))
            store["from"] = str(source.path) + ("" if source.column == "vector" else f" (column {source.column})")
        index_bytes = (staging / INDEX_FILE).stat().st_size
        recall = None
        if store is not None:
            opened = open_exact_store(staging / EXACT_FILE)
            recall = measure_recall(CompactSearch(index, {"compact": {"dtype": dtype, "rescore_multiplier":
                                    config.rescore_multiplier}, "metric": config.metric,
                                    "search_params": _binary_search_params(factory) if binary else ""}, opened),
                                    opened, config.tuning_queries, config.metric, config.seed)
            log.info("recall@10 of %s + rescoring (x%d candidates) vs exhaustive search over the rescoring "
                     "vectors: %.4f", factory, config.rescore_multiplier, recall)
        info = {
            "format_version": FORMAT_VERSION, "embedpipe_version": __version__,
            "factory": factory, "factory_requested": config.factory,
            "metric": config.metric,
            "n": n, "dim": dim, "build_seconds": round(time.monotonic() - started, 3),
            "memory_bytes": index_bytes,   # the compact index: what search holds in RAM
            "disk_bytes": store["bytes"] if store else 0,   # the exact store: read a few rows per query
            "max_memory": max_memory,
            "search_params": _binary_search_params(factory) if binary else "",
            "recall_at_10": recall, "target_recall": config.target_recall,
            "compact": {"dtype": dtype, "bytes_per_vector": bytes_per_vector(dim, dtype),
                        "rescore": store is not None, "rescore_multiplier": config.rescore_multiplier,
                        "exact_store": store},
            "warnings": [], "config": json.loads(json.dumps(asdict(config))),
            **source_record(vectors), "ids_file": IDS_ARROW_FILE,
            **({SPANS_KEY: SPANS_FILE} if spans is not None else {}),
        }
        write_json_atomic(staging / INFO_FILE, info)
    log.info("wrote %s (%s, %d bytes in RAM, %d on disk for rescoring)", out, factory, index_bytes, info["disk_bytes"])
    return info


def exhaustive(store, queries: np.ndarray, k: int, metric: str, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over every row of the exact store: (scores, rows), higher is better."""
    exact = ExactTopK(queries, min(k, store.rows), metric)
    for start in range(0, store.rows, chunk):
        exact.add(store.vectors(np.arange(start, min(store.rows, start + chunk))), start)
    distances, rows = exact.result()
    return (distances if metric == "ip" else -distances), rows


def measure_recall(search: CompactSearch, store, queries: int, metric: str, seed: int) -> float:
    """recall@10 of ``search`` against exhaustive search over the exact store, on up to ``queries`` of
    the store's own rows (they are in the index: a flat index finds each one first, so this flatters a
    little; it still shows what the candidates miss)."""
    rows = np.sort(np.random.default_rng(seed).choice(store.rows, min(queries, store.rows), replace=False))
    sample = store.vectors(rows)
    truth = exhaustive(store, sample, RECALL_K, metric)[1]
    return round(recall_at_k(search.search(sample, RECALL_K)[1], truth), 4)


@dataclass
class CompactSearch:
    """A compact index with its exact store: candidates by codes, ranked by exact scores."""

    index: object          # faiss.IndexBinary or faiss.Index (SQ8)
    info: dict
    store: object | None   # ExactStore, or None when rescoring is off

    @property
    def dtype(self) -> str:
        return self.info["compact"]["dtype"]

    @property
    def d(self) -> int:          # as a FAISS index says it (LoadedIndex.dim): bits for a binary index
        return self.index.d

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Float queries (n, dim) -> (scores, rows), higher is better, rows -1 where none."""
        k = min(k, self.index.ntotal)
        wanted = k * int(self.info["compact"].get("rescore_multiplier") or 1) if self.store is not None else k
        wanted = min(wanted, self.index.ntotal)
        if self.dtype in PACKED:
            params = self.info.get("search_params") or ""
            if params.startswith("efSearch="):
                faiss.downcast_IndexBinary(self.index).hnsw.efSearch = max(int(params.split("=")[1]), wanted)
            elif params.startswith("nprobe="):
                faiss.downcast_IndexBinary(self.index).nprobe = int(params.split("=")[1])
            distances, rows = self.index.search(np.packbits(queries > 0, axis=-1), wanted)
            scores = (self.index.d - 2 * distances.astype(np.float32)) / self.index.d   # agreeing bits, in [-1, 1]
        else:
            distances, rows = self.index.search(queries, wanted)
            scores = distances if self.info["metric"] == "ip" else -distances
        if self.store is None:
            return scores[:, :k], rows[:, :k]
        return self.store.rescore(queries, rows.astype(np.int64), k, self.info["metric"])

    def exhaustive(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over every rescoring vector: what the candidates + rescoring approximate."""
        return exhaustive(self.store, np.ascontiguousarray(queries, dtype=np.float32), k, self.info["metric"])


def open_compact_index(path: Path, info: dict, *, mmap: bool = False) -> CompactSearch:
    """The compact index and exact store of INDEX_DIR (the store memory-mapped), checked against index.json."""
    index_path = path / INDEX_FILE
    binary = info["compact"].get("dtype") in PACKED
    try:
        if binary:
            index = faiss.read_index_binary(str(index_path))
        else:
            from ..formats.index_dir import MMAP_FLAGS
            index = faiss.read_index(str(index_path), MMAP_FLAGS if mmap else 0)
    except RuntimeError:
        raise CorruptArtifact(f"{index_path} cannot be read by FAISS (missing, truncated or corrupt); "
                              "rebuild it with `embedpipe index`") from None
    if index.d != int(info["dim"]) or index.ntotal != int(info["n"]):
        raise CorruptArtifact(f"{index_path} holds {index.ntotal} x {index.d}, {INFO_FILE} says "
                              f"{info['n']} x {info['dim']}")
    store = None
    record = info["compact"].get("exact_store")
    if info["compact"].get("rescore") and record:
        store = open_exact_store(path / record["file"])
        if store.rows != index.ntotal or store.dim != index.d:
            raise CorruptArtifact(f"{path / record['file']} holds {store.rows} x {store.dim}, the index "
                                  f"{index.ntotal} x {index.d}; rebuild it with `embedpipe index`")
    return CompactSearch(index, info, store)


def rebuild_compact(path: Path, info: dict, vectors: VectorSet, started: float) -> dict:
    """Append to a compact index: rebuilt whole from the grown vector directory with its recorded config
    (its exact store must follow the index's rows; Hamming / SQ8 adds are cheap). The precision and the
    encoder must be those of the index."""
    from .config import IndexConfig

    was = (info.get("compact") or {}).get("dtype") or (info.get("manifest") or {}).get("dtype") or "float32"
    if vectors.dtype != was:
        raise EmbedpipeError(f"the index holds {was} vectors and {vectors.path} holds {vectors.dtype}; "
                             "rebuild the index without append", fields=("append",))
    indexed = info.get("manifest") or {}
    if (identity_of(indexed), indexed.get("dim")) != (identity_of(vectors.manifest), vectors.dim):
        raise EmbedpipeError(f"{vectors.path} was encoded differently from the vectors in the index "
                             "(encoder, model, truncate_dim or dimension); rebuild the index without append",
                             fields=("append",))
    recorded = {k: v for k, v in (info.get("config") or {}).items() if k in IndexConfig.__dataclass_fields__}
    config = IndexConfig(**{**recorded, "factory": info.get("factory_requested") or "auto"})
    appended = {"rows": vectors.rows - int(info["n"]), "rebuilt": True}
    new = build_compact_index(vectors, path, config, started)
    new["appends"] = [*info.get("appends", []), appended]
    write_json_atomic(path / INFO_FILE, new)
    return new
