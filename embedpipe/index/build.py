"""Vector directory -> FAISS index directory (formats/index_dir.py): chosen, trained, filled, tuned.

    >>> info = build_index("corpus.vectors", "corpus.index", IndexConfig(factory="auto"))   # doctest: +SKIP
    >>> info["factory"], info["search_params"], info["recall_at_10"]                        # doctest: +SKIP
    ('HNSW32', 'efSearch=48', 0.962)

Building streams the shards twice: once to pick a training sample and the tuning queries
(samples.py), once to add vectors in chunks (while exact search of the tuning queries runs over the
same chunks), so memory stays near the index's own size. The tuning queries are held out: not
trained on, and added to the index only after tuning, so they are searched as unseen points like
real queries (a point already in an HNSW graph is reached through its own links, which would flatter
recall). Files are written in a staging directory that replaces INDEX_DIR only when complete.

index.json records what the index was built from (the vector manifest, its sha256, the IndexConfig),
so a pipeline can tell the index is up to date and append.py can add the shards it does not hold yet.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from .. import __version__, checks
from ..encode.resume import output_lock
from ..errors import BadInput, EmbedpipeError
from ..formats.codes import COMPACT
from ..formats.index_dir import EXACT_STORE_FILE, FORMAT_VERSION, INFO_FILE, upload_index_dir, write_index_dir
from ..formats.ivfdata import IVFDATA_FILE
from ..formats.vectors import VectorSet, open_vectors
from ..fsio import FileLock, check_output, check_output_dir, is_url, local_path
from ..progress import Progress
from ..storage.store import Store
from .choose import (
    CHOICE_SAMPLE_ROWS,
    FLAT_MAX_ROWS,
    MEASURED_CHOICE_MIN_ROWS,
    choose_factory,
    parse_size,
    pick_measured,
    training_rows,
)
from .compact import build_compact_index
from .config import IndexConfig
from .exact_store import append_exact_store, open_exact_store, write_exact_store
from .factory import (
    faiss_threads,
    is_exact,
    ivf_of,
    make_index,
    nlist_of,
    prepare_auto_index,
    set_ef_construction,
    train_index,
)
from .measure import measure_candidates
from .ondisk import ListsPlan, WithoutRows, auto_candidates, on_disk_bytes, ondisk_route, plan_lists
from .parallel import build_dir_of, check_parallel_factory, fill_in_parallel, in_this_process
from .parallel_ray import ray_units
from .params import RECALL_K, ExactTopK, Tuning, tune_search_params
from .refine import RefinePlan, StoreRefined, budgeted_candidates, plan_refine
from .samples import Samples, draw_samples
from .source import check_row_count, concat_ids, source_record
from .spans import spans_in_index_order

log = logging.getLogger("embedpipe.index")


def metric_warnings(manifest: dict, metric: str) -> list[str]:
    """Tell the user when the metric does not fit how the vectors were (not) normalized."""
    normalized = manifest.get("normalize")
    if normalized is None:
        return ["the vector manifest does not say whether vectors are normalized; "
                f"metric {metric} is used as given"]
    if metric == "ip" and not normalized:
        return ["the vectors are not normalized, so inner-product scores are not cosine similarities "
                "and long vectors win; re-encode with normalization for cosine, or use metric l2"]
    if metric == "l2" and normalized:
        return ["the vectors are normalized: metric l2 ranks exactly like cosine, "
                "but metric ip would report the cosine similarity itself as the score"]
    return []


def build_index(vectors_dir: str | os.PathLike, out: str | os.PathLike, config: IndexConfig = IndexConfig(),
                *, overwrite: bool = False, threads: int | None = None) -> dict:
    """Build, tune and write INDEX_DIR from a vector directory; returns what index.json holds.
    ``threads``: FAISS threads (None = all cores); how fast it builds, not what it builds."""
    with faiss_threads(threads):
        checks.boolean("overwrite", overwrite)
        if local_path(out) is not None:   # refused before the lock beside it is made
            check_output(out, {"vectors": vectors_dir, "tuning queries": config.tuning_vectors})
        with output_lock(out):   # encode's and append's lock on an output: one writer at a time
            if is_url(out) and local_path(out) is None:
                return _build_then_upload(vectors_dir, str(out), config, overwrite)
            return _build_local_index_dir(vectors_dir, out, config, overwrite)


def _build_then_upload(vectors_dir, url: str, config: IndexConfig, overwrite: bool) -> dict:
    """An object store: build in a local temporary directory, then upload it to ``url``."""
    if Store.at(url).exists(INFO_FILE) and not overwrite:
        raise BadInput(f"output {url} already holds an index; pass overwrite=true to replace it",
                       fields=("overwrite",))
    with tempfile.TemporaryDirectory(prefix="embedpipe-index-") as local:
        info = _build_local_index_dir(vectors_dir, Path(local) / "index", config, overwrite)
        upload_index_dir(Path(local) / "index", url)
    log.info("uploaded the index to %s", url)
    return info


def _build_local_index_dir(vectors_dir, out, config: IndexConfig, overwrite: bool) -> dict:
    out = check_output(out, {"vectors": vectors_dir, "tuning queries": config.tuning_vectors,
                             "rescoring vectors": config.rescore_from})
    vectors = open_vectors(vectors_dir, verify=True)
    out = check_output_dir(out, overwrite, INFO_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    # an exact store is written beside the output while the vectors are added (the same filesystem,
    # so it moves into the index directory by a rename), and removed with it on any error
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.exact-") as scratch:
        return _build_in(vectors, out, config, Path(scratch))


def _build_in(vectors: VectorSet, out: Path, config: IndexConfig, scratch: Path) -> dict:
    started = time.monotonic()
    n, dim = vectors.rows, vectors.dim
    if n == 0:
        raise EmbedpipeError(f"{vectors.path} holds no vectors; there is nothing to index")
    if vectors.dtype in COMPACT:   # int8 / binary codes: their own indexes, rescored (compact.py)
        if config.runner == "ray":
            raise BadInput(f"{vectors.path} holds {vectors.dtype} codes, which are indexed in one process; the "
                           "parallel build on Ray is for float vectors: pass runner=local", fields=("runner",))
        return build_compact_index(vectors, out, config, started)
    if config.rescore_from is not None:
        raise BadInput(f"rescore_from applies to int8 and binary vectors; {vectors.path} holds {vectors.dtype}",
                       fields=("rescore_from",))
    warnings = metric_warnings(vectors.manifest, config.metric)
    for warning in warnings:
        log.warning("warning: %s", warning)
    max_memory = parse_size(config.max_memory)
    runner, why = choose_index_runner(config, n, dim, max_memory)
    if runner == "ray":
        chosen, samples, choice = parallel_factory(config, n, dim, max_memory), None, None
    else:
        chosen, samples, choice = _factory_for(vectors, config, max_memory)
    plan = plan_refine(chosen, n, dim, max_memory, config.exact_store)
    lists = _plan_lists(plan.factory, n, dim, max_memory, config)
    if (runner == "ray" or lists.on_disk) and plan.factory.endswith(("RFlat", "Refine(Flat)")):
        plan = plan_refine(chosen, n, dim, max_memory, "float16")  # partial indexes hold no in-RAM refine
        lists = _plan_lists(plan.factory, n, dim, max_memory, config)
    factory = lists.factory
    if (runner == "ray" or lists.on_disk) and config.tuning_vectors:   # parts tune on held-out corpus vectors
        raise BadInput("tuning_vectors (sample queries) are not used by a build in parts (runner=ray, or inverted "
                       "lists on disk), which tunes on held-out corpus vectors; leave them out, or pass "
                       "runner=local with inverted_lists=ram", fields=("tuning_vectors",))
    if lists.on_disk and runner == "local":
        why += "; the inverted lists go on disk, so the shards are added as parts here and merged on disk"
    log.info("index for %d vectors of dimension %d: %s (metric %s)", n, dim, factory, config.metric)
    index = make_index(factory, dim, config.metric)
    log.info("inverted lists: %s", lists.reason)
    if plan.store_dtype and is_exact(index):
        plan = RefinePlan(factory, None, plan.k_factor, "exact search needs no refine step")
    log.info("refine: %s", plan.reason)
    store_path = scratch / EXACT_STORE_FILE if plan.store_dtype else None
    if config.factory == "auto":
        prepare_auto_index(index, config.ef_construction)
    elif config.ef_construction is not None:
        set_ef_construction(index, factory, config.ef_construction)

    log.info("runner %s: %s", runner, why)
    parts, queries_added = {}, False
    if runner == "ray" or lists.on_disk:
        check_parallel_factory(index, factory)  # before Ray starts
        busy = f"another build of {out} is running (its parts are in {build_dir_of(out)})"
        units = ray_units(config.ray_address) if runner == "ray" else nullcontext(in_this_process)
        with FileLock(out.with_name(f".{out.name}.build.lock"), busy, remove=True), units as run:
            filled = fill_in_parallel(vectors, index, factory, config, build_dir_of(out), plan.store_dtype, run,
                                      scratch, on_disk=lists.on_disk)
        index, ids, samples, truth = filled.index, filled.ids, filled.samples, filled.truth
        queries_added = filled.queries_added
        store_path, trained = filled.store_path, filled.trained_on
        parts = {"parts_reused": filled.reused, "parts_by_node": filled.nodes}
        store_record = open_exact_store(store_path).record() if store_path else None
    else:
        if samples is None and not is_exact(index):
            samples = draw_samples(vectors, index, config)
        trained = 0
        if samples is not None and samples.train is not None and not index.is_trained:
            trained = min(len(samples.train), training_rows(n, nlist_of(index)))
            train_index(index, factory, samples.train[:trained])
        exact = ExactTopK(samples.queries, RECALL_K, config.metric) if samples is not None else None
        held_out = samples.query_rows if samples is not None else np.empty(0, dtype=np.int64)
        ids, store_record = _add_all(index, vectors, exact, config.add_batch_rows, held_out, store_path,
                                     plan.store_dtype)
        truth = exact.result()[1] if exact is not None else None
    # on disk, the tuning queries are in the index already: tuning searches it without them
    searched = WithoutRows(index, index.ntotal - len(samples.queries)) if queries_added else index
    search = StoreRefined(searched, open_exact_store(store_path), config.metric, plan.k_factor).search \
        if store_path else (searched.search if queries_added else None)

    if samples is None:
        tuning = Tuning("", 1.0, True)
    else:
        tuning = tune_search_params(index, samples.queries, truth, config.target_recall, RECALL_K,
                                    margin=config.recall_margin, search=search)
        log.info("search parameters %r give recall@10 %.4f vs exact search (aimed at %.4f: the target %s + "
                 "the margin %s)", tuning.params, tuning.recall, tuning.aim, config.target_recall, config.recall_margin)
        if len(samples.query_rows):  # the held-out rows join the index last; ids.parquet follows
            if not queries_added:
                index.add(samples.queries)
            ids = concat_ids([ids, pa.array(samples.query_ids, ids.type)], vectors)
            if store_path:
                store_record = append_exact_store(store_path, [samples.queries])
        if not tuning.reached:
            warnings.append(f"{factory} reaches recall@10 {tuning.recall:.3f} at most, below the target "
                            f"{config.target_recall}; allow more max_memory or choose a factory with less compression")
            log.warning("warning: %s", warnings[-1])

    def describe(index_bytes: int) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "embedpipe_version": __version__,
            "factory": factory,
            "factory_requested": config.factory,
            "metric": config.metric,
            "n": n,
            "dim": dim,
            "build_seconds": round(time.monotonic() - started, 3),
            "memory_bytes": index_bytes,  # the serialized index, which is what search holds in memory (on-disk
                                          # lists: the quantizers and where each list lies; the lists apart)
            "max_memory": max_memory,
            "search_params": tuning.params,
            "recall_at_10": tuning.recall,
            "target_recall": config.target_recall,
            "recall_margin": config.recall_margin,
            "recall_reached": tuning.reached,
            "tuning": {"queries": 0 if samples is None else len(samples.queries),
                       "aimed_at": tuning.aim,
                       "on": None if samples is None else (config.tuning_vectors or "held-out corpus vectors"),
                       "training_vectors": trained,
                       "trials": tuning.trials},
            "recall_measured_at_n": n,
            "auto_choice": choice,
            "runner": {"name": runner, "why": why, **parts},
            "refine": plan.record(),
            "exact_store": store_record,
            "inverted_lists": {**lists.record(), **({"file": IVFDATA_FILE, "bytes": on_disk_bytes(index)}
                                                     if lists.on_disk else {})},
            "warnings": warnings,
            "config": json.loads(json.dumps(config.record())),
            **source_record(vectors),
        }

    tuning_sample = None
    if samples is not None:
        tuning_sample = (samples.queries, list(samples.query_ids) if len(samples.query_rows) else None)
    files = {EXACT_STORE_FILE: store_path} if store_path else {}
    if lists.on_disk:
        files[IVFDATA_FILE] = scratch / IVFDATA_FILE
    info = write_index_dir(out, index, ids, describe, tuning=tuning_sample, files=files,
                           spans=spans_in_index_order(vectors, ids))
    shutil.rmtree(build_dir_of(out), ignore_errors=True)  # published: the parts are not needed again
    log.info("wrote %s (%s, %d bytes, %.1fs)", out, factory, info["memory_bytes"], info["build_seconds"])
    return info


def choose_index_runner(config: IndexConfig, n: int, dim: int, max_memory: int) -> tuple[str, str]:
    """(runner, why): ``auto`` is ray when a cluster is named (ray_address or $RAY_ADDRESS) and the
    index has inverted lists to build in parts, else local. A pipeline run as a Ray job has
    $RAY_ADDRESS set: its small Flat or HNSW index is still built here rather than refused."""
    if config.runner != "auto":
        return config.runner, f"runner={config.runner}"
    address = config.ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        return "local", "no Ray cluster named: in this process"
    factory = _parallel_route(config, n, dim, max_memory)
    if factory is None:
        named = config.factory if config.factory != "auto" else choose_factory(n, dim, max_memory)
        return "local", (f"a Ray cluster is named ({address}), but {named} has no inverted lists to build "
                         "in parts: in this process")
    return "ray", f"a Ray cluster is named ({address})"


def _parallel_route(config: IndexConfig, n: int, dim: int, max_memory: int) -> str | None:
    """The IVF factory a parallel build would use (fast-scan first; when even its codes exceed the budget,
    ondisk.ondisk_route unless inverted_lists=ram), or None when there is none."""
    if config.factory != "auto":
        return config.factory if "IVF" in config.factory else None
    try:
        candidates = budgeted_candidates(n, dim, max_memory)
    except EmbedpipeError:   # nothing fits in RAM at all
        candidates = []
    fast = [f for f in candidates if "x4fs" in f]
    if not fast and config.inverted_lists != "ram" and n >= FLAT_MAX_ROWS and ondisk_route(n, dim, max_memory):
        return ondisk_route(n, dim, max_memory)
    ivf = fast + [f for f in candidates if "IVF" in f]
    return ivf[0] if ivf else None


def _plan_lists(factory: str, n: int, dim: int, max_memory: int, config: IndexConfig) -> ListsPlan:
    """Where ``factory``'s inverted lists go (ondisk.plan_lists), read off an empty index of it."""
    ivf = ivf_of(make_index(factory, dim, config.metric))
    return plan_lists(factory, None if ivf is None else ivf.nlist, 0 if ivf is None else ivf.code_size,
                      n, dim, max_memory, config.inverted_lists)


def parallel_factory(config: IndexConfig, n: int, dim: int, max_memory: int) -> str:
    """The factory of a parallel build: the one named, or for ``auto`` (not measured: measuring would read a
    sample through the driver first) the fast-scan route when it fits, else the first IVF route that does."""
    if config.factory != "auto":
        return config.factory
    factory = _parallel_route(config, n, dim, max_memory)
    if factory is None:
        raise EmbedpipeError(f"no IVF index fits {n} vectors under max_memory for the parallel build (it merges "
                             f"inverted lists; the choice was {choose_factory(n, dim, max_memory)}); use runner=local",
                             fields=("runner",))
    return factory


def _factory_for(vectors: VectorSet, config: IndexConfig, max_memory: int) -> tuple[str, Samples | None, dict | None]:
    """(factory, samples, what auto measured): the factory config names, or auto's choice: the ladder's
    first rung, or from MEASURED_CHOICE_MIN_ROWS vectors on the fastest of the routes that fit,
    measured on a sample (whose tuning queries and training vectors the build then reuses)."""
    if config.factory != "auto":
        return config.factory, None, None
    n, dim = vectors.rows, vectors.dim
    try:
        factory = choose_factory(n, dim, max_memory)
    except EmbedpipeError:   # no index fits in RAM: its lists on disk, when that much fits
        on_disk = ondisk_route(n, dim, max_memory) if config.inverted_lists != "ram" else None
        if on_disk is None:
            raise
        log.info("auto: no index fits max_memory in RAM; %s with its inverted lists on disk", on_disk)
        return on_disk, None, None
    candidates = auto_candidates(n, dim, max_memory, config.inverted_lists)
    if len(candidates) == 1 or n < MEASURED_CHOICE_MIN_ROWS:
        return factory, None, None
    samples = draw_samples(vectors, None, config, sample_rows=CHOICE_SAMPLE_ROWS)
    base = samples.train[:CHOICE_SAMPLE_ROWS]
    log.info("auto: measuring %s on %d sampled vectors", ", ".join(candidates), len(base))
    rows = measure_candidates(candidates, base, samples.queries, config.metric, config.target_recall, RECALL_K,
                              margin=config.recall_margin, ef_construction=config.ef_construction)
    for row in rows:
        log.info("  %-28s %-34s recall@10 %.4f, %8.0f queries/s", row["measured_as"], row["search_params"],
                 row["recall_at_10"], row["qps"])
    return pick_measured(rows)["factory"], samples, {"sample_rows": len(base), "candidates": rows}


def _add_all(index: faiss.Index, vectors: VectorSet, exact: ExactTopK | None, batch_rows: int,
             held_out: np.ndarray, store_path: Path | None = None,
             store_dtype: str | None = None) -> tuple[pa.Array, dict | None]:
    """Add every vector except the held-out rows in chunks, feeding the same chunks to exact
    search and, with ``store_path``, to an exact store in the same order; returns the ids in the order
    they were added (= the index's row labels) and the store's record."""
    held_out = np.sort(held_out)
    ids, counts = [], {"read": 0, "added": 0}

    def added_batches():
        with Progress(vectors.rows, "vectors added") as progress:
            for batch_ids, batch in vectors.iter_batches(batch_rows):
                start = counts["read"]
                keep = ~np.isin(np.arange(start, start + len(batch)), held_out)
                if not keep.all():
                    batch_ids, batch = batch_ids.filter(pa.array(keep)), batch[keep]
                index.add(batch)
                if exact is not None:
                    exact.add(batch, counts["added"])
                ids.append(batch_ids)
                counts["read"] += len(keep)
                counts["added"] += len(batch)
                progress.update(len(keep))
                yield batch

    if store_path is None:
        record = None
        for _ in added_batches():
            pass
    else:
        record = write_exact_store(store_path, added_batches(), store_dtype)
    check_row_count(vectors, counts["read"])
    return concat_ids(ids, vectors), record
