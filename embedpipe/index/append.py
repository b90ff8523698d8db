"""An index directory + its vector directory grown by new shards -> the same index holding them too,
extended without retraining, its recall on the tuning queries measured again.

    >>> append_index("corpus.index", "corpus.vectors")["appends"][-1]["rows"]              # doctest: +SKIP
    1200

index.json records the vector manifest the index was built from, so ``new_shards`` can name exactly
the shards it does not hold yet (an incremental encode adds new shards and never rewrites published
ones), and refuse vectors it cannot extend from.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..encode.resume import output_lock
from ..errors import EmbedpipeError
from ..formats.codes import COMPACT
from ..formats.index_dir import INFO_FILE, download_index_dir, read_tuning, upload_index_dir, write_index_dir
from ..formats.index_ids import IndexIds
from ..formats.vectors import VectorSet, identity_of, open_vectors
from ..fsio import check_output, is_url, local_path, write_json_atomic
from ..progress import Progress
from ..storage.store import Store
from .compact import rebuild_compact
from .config import IndexConfig
from .exact_store import append_exact_store, open_exact_store, scale_path
from .factory import faiss_threads
from .load import open_index
from .ondisk import refuse_append
from .params import RECALL_K, ExactTopK, apply_search_params
from .refine import StoreRefined
from .source import concat_ids, source_record
from .spans import check_same_chunking, spans_in_index_order

log = logging.getLogger("embedpipe.index")


def shard_key(shard: dict) -> tuple[str, str]:
    return (shard.get("file"), shard.get("sha256"))


def new_shards(info: dict, manifest: dict, vectors_dir: Path | str) -> list[dict]:
    """The shards of ``manifest`` the index does not hold yet; an error when the index cannot be
    extended from these vectors (other encoder, or shards it holds were rewritten or removed)."""
    indexed = info.get("manifest") or {}
    if (identity_of(indexed), indexed.get("dim")) != (identity_of(manifest), manifest.get("dim")):
        raise EmbedpipeError(f"{vectors_dir} was encoded differently from the vectors in the index "
                             "(encoder, model or dimension); rebuild the index without append", fields=("append",))
    present = {shard_key(s) for s in manifest.get("shards", [])}
    gone = [shard_key(s)[0] for s in indexed.get("shards", []) if shard_key(s) not in present]
    if gone:
        raise EmbedpipeError(f"shard(s) the index holds are no longer in {vectors_dir} as they were "
                             f"({', '.join(gone[:3])}); the vectors were rebuilt, so rebuild the index without append",
                             fields=("append",))
    held = {shard_key(s) for s in indexed.get("shards", [])}
    return [s for s in manifest.get("shards", []) if shard_key(s) not in held]


def append_index(index_dir: str | os.PathLike, vectors_dir: str | os.PathLike | None = None,
                 *, batch_rows: int = 65_536, threads: int | None = None) -> dict:
    """Add to INDEX_DIR the vectors of the shards it does not hold yet (from ``vectors_dir``, by
    default the directory it was built from). The trained index (IVF centroids, PQ codebooks, HNSW
    graph) is extended, not retrained, and its search parameters are kept; recall@10 is measured
    again on the queries it was tuned on (tuning.parquet) against exact search over all the vectors,
    and index.json says whether it still reaches the target (a warning says when it fell below:
    rebuild to retrain and retune). Returns the new index.json."""
    with faiss_threads(threads):
        if is_url(index_dir) and local_path(index_dir) is None:
            return _append_at_url(str(index_dir), vectors_dir, batch_rows)
        if not Path(index_dir).is_dir():   # before the lock beside it is made
            raise EmbedpipeError(f"index directory {index_dir} does not exist")
        with output_lock(index_dir):   # encode's lock on an output: one writer at a time
            return _append_new_shards(index_dir, vectors_dir, batch_rows)


def _append_at_url(url: str, vectors_dir, batch_rows: int) -> dict:
    """An index on an object store: copied here, extended, uploaded back (index.json last, as a build
    uploads one); the vectors are those it was built from unless ``vectors_dir`` names others."""
    refuse_append(Store.at(url).read_json(INFO_FILE) or {}, url)   # before downloading its lists
    with output_lock(url), tempfile.TemporaryDirectory(prefix="embedpipe-append-") as local:
        path = download_index_dir(url, Path(local))
        info = _append_new_shards(path, vectors_dir, batch_rows)
        upload_index_dir(path, url)
    log.info("uploaded the extended index to %s", url)
    return info


def _append_new_shards(index_dir, vectors_dir, batch_rows: int) -> dict:
    started = time.monotonic()
    path = Path(index_dir)
    loaded = open_index(path)
    info = loaded.info
    refuse_append(info, str(path))
    source = vectors_dir or info.get("vectors") or ""
    check_output(path, {"vectors": source})  # the index is replaced as a whole: it must not hold its source
    vectors = open_vectors(source, verify=True)
    check_same_chunking(info, vectors)
    if info.get("compact") or vectors.dtype in COMPACT:   # codes and their exact store are rebuilt whole
        return rebuild_compact(path, info, vectors, started)
    if vectors.dim != loaded.dim:
        raise EmbedpipeError(f"{vectors.path} holds vectors of dimension {vectors.dim}, the index {loaded.dim}")
    shards = new_shards(info, vectors.manifest, vectors.path)
    rows = sum(int(s["rows"]) for s in shards)
    expected = int(info["n"]) + rows
    if expected != vectors.rows:
        raise EmbedpipeError(f"the index holds {info['n']} vectors and {vectors.path} adds {rows} in new shards, "
                             f"but it holds {vectors.rows}; rebuild the index without append", fields=("append",))
    if not shards:
        info = {**info, **source_record(vectors)}
        write_json_atomic(path / INFO_FILE, info)
        log.info("%s already holds every shard of %s: nothing to append", path, vectors.path)
        return info
    index, ids = loaded.index, [loaded.ids.to_array()]   # every id in RAM: append writes them all again
    added = VectorSet(vectors.store, {**vectors.manifest, "shards": shards, "rows": rows})
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.exact-") as scratch:
        store = _store_copy(loaded, Path(scratch))
        return _append_rows(path, loaded, vectors, added, shards, rows, index, ids, store, batch_rows, started)


def _store_copy(loaded, scratch: Path) -> Path | None:
    """A copy of the index's exact store to append to (the index directory is replaced whole, and the
    one being replaced must stay as it was until then); None when the index has none."""
    if loaded.refine is None:
        return None
    copy = scratch / loaded.refine.store.path.name
    shutil.copyfile(loaded.refine.store.path, copy)
    side = scale_path(loaded.refine.store.path)
    if side.exists():
        shutil.copyfile(side, scale_path(copy))
    return copy


def _append_rows(path, loaded, vectors, added, shards, rows, index, ids, store, batch_rows, started) -> dict:
    info = loaded.info
    with Progress(rows, "vectors appended") as progress:
        for batch_ids, batch in added.iter_batches(batch_rows):
            clash = pc.is_in(batch_ids, value_set=ids[0])
            if pc.any(clash).as_py():
                first = batch_ids.filter(clash)[0].as_py()
                raise EmbedpipeError(f"id {first!r} of a new shard in {vectors.path} is already in the index; "
                                     "rebuild the index without append", fields=("append",))
            index.add(batch)
            if store is not None:
                append_exact_store(store, [batch])
            ids.append(batch_ids)
            progress.update(len(batch))
    ids = concat_ids(ids, vectors)
    tuning = read_tuning(path)
    search = None
    if store is not None:
        search = StoreRefined(index, open_exact_store(store), info["metric"], loaded.refine.k_factor).search
    recall = None if tuning is None else recall_on_tuning_queries(index, ids, vectors, tuning, info, batch_rows,
                                                                  search)
    append = {"rows": rows, "shards": [shard_key(s)[0] for s in shards],
              "at": datetime.now(UTC).isoformat(timespec="seconds"),
              "seconds": round(time.monotonic() - started, 3), "recall_at_10": recall}
    target = float(info.get("target_recall", IndexConfig.target_recall))
    measured = {}
    if recall is not None:
        measured = {"recall_at_10": recall, "recall_reached": recall >= target,
                    "recall_measured_at_n": int(index.ntotal)}
        if recall < target:
            warning = (f"after appending {rows} vectors, recall@10 on the tuning queries fell to {recall:.3f}, "
                       f"below the target {target} (it was {info['recall_at_10']:.3f} at "
                       f"{info.get('recall_measured_at_n')} vectors); rebuild the index (without append) "
                       "to retrain and retune it")
            log.warning("warning: %s", warning)
            measured["warnings"] = [*info.get("warnings", []), warning]
        else:
            log.info("recall@10 on the tuning queries after the append: %.4f (target %s)", recall, target)

    store_record = {} if store is None else {"exact_store": {**info["exact_store"],
                                                              **open_exact_store(store).record()}}

    def describe(index_bytes: int) -> dict:
        return {**info, "n": int(index.ntotal), "memory_bytes": index_bytes, **source_record(vectors), **store_record,
                "appends": [*info.get("appends", []), append],
                "recall_measured_at_n": info.get("recall_measured_at_n", info["n"]), **measured}

    moved = {} if store is None else {p.name: p for p in (store, scale_path(store)) if p.exists()}
    info = write_index_dir(path, index, ids, describe, tuning=tuning, files=moved,
                           spans=spans_in_index_order(vectors, ids))
    log.info("appended %d vectors from %d new shard(s) to %s: %d in all", rows, len(shards), path, info["n"])
    return info


def recall_on_tuning_queries(index: faiss.Index, ids: pa.Array, vectors: VectorSet,
                             tuning: tuple[np.ndarray, list | None], info: dict, batch_rows: int,
                             search=None) -> float | None:
    """Recall@10 of ``index`` (its search parameters as recorded) on the tuning queries, against exact
    search over every vector of ``vectors``, compared by corpus id (the index's rows are not in the
    vector directory's order). Held-out corpus vectors were added to the index after tuning, so each
    one's own id is left out of both lists, and the next hit counts instead. ``search``: what answers
    the queries (default ``index.search``; an index with an exact store re-ranks through it)."""
    queries, query_ids = tuning
    k = RECALL_K + (query_ids is not None)
    exact = ExactTopK(queries, k, info["metric"])
    chunks, start = [], 0
    for batch_ids, batch in vectors.iter_batches(batch_rows):
        exact.add(batch, start)
        chunks.append(batch_ids)
        start += len(batch)
    truth_rows = exact.result()[1]
    apply_search_params(index, info.get("search_params", ""))
    _, found_rows = (search or index.search)(np.ascontiguousarray(queries, dtype=np.float32), k)
    # only the hits' ids become Python objects (a list of every id was ~100 bytes of RAM per vector, twice)
    truth_ids = IndexIds(chunks, ids.type).take_each(truth_rows)
    found_ids = IndexIds.in_memory(ids).take_each(found_rows)
    hits = []
    for i in range(len(queries)):
        own = query_ids[i] if query_ids is not None else None
        truth = [doc for doc in truth_ids[i] if doc != own][:RECALL_K]
        found = [doc for doc in found_ids[i] if doc != own][:RECALL_K]
        if truth:
            hits.append(len(set(truth) & set(found)) / len(truth))
    return float(np.mean(hits)) if hits else None   # no query had a neighbour left: nothing measured
