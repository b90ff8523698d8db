"""The parallel build (``runner=ray``): train once on a sample read in parallel, hand the trained empty index
to workers that each add one vector shard into a partial index (parts.py), merge the partial inverted
lists in the driver, and concatenate the parts' exact-store rows in index order.

    >>> filled = fill_in_parallel(vectors, index, factory, config, build, "float16", run, tmp)  # doctest: +SKIP
    >>> filled.index.ntotal, filled.store_path                                                # doctest: +SKIP

The commit protocol is encode's: each part is written under its attempt's names with its receipt last;
the driver writes index.json last (build.py). ``build_dir`` (``.OUT.build`` beside the output) survives
a killed run: a rerun with the same vectors and config reuses the trained index and every finished part
(plan.json says what they were made for), and the directory is removed once the index is published.
Index rows: the shards' rows in order without the held-out tuning queries, then the tuning queries
(added by build.py after tuning), as the one-process build numbers them.

The merge holds the merged inverted lists in RAM when they fit max_memory (what the index needs at
search anyway; the float vectors stay on disk in the exact store); otherwise (``on_disk``) it writes
them into index.ivfdata from the parts' lists mapped, never all in RAM (ondisk.py), the held-out tuning
queries' codes merged in as a last part.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptArtifact, EmbedpipeError
from ..formats.ivfdata import IVFDATA_FILE
from ..formats.vectors import VectorSet
from ..fsio import atomic_path, read_json, write_json_atomic
from .choose import training_rows
from .config import IndexConfig
from .exact_store import append_exact_store, open_exact_store, write_exact_store
from .factory import ivf_of, make_index, nlist_of, train_index
from .ondisk import merge_on_disk
from .params import RECALL_K
from .parts import (
    PLAN_FILE,
    QUERIES_FILE,
    TRAINED_FILE,
    Part,
    add_part,
    part_files,
    read_lists,
    read_rows,
    receipt_name,
    write_lists,
)
from .samples import Samples
from .source import concat_ids

log = logging.getLogger("embedpipe.index")

# run(function, [args, ...]) -> each call's result, in any order: in this process or on Ray (parallel_ray.py)
Runner = Callable[[Callable, list[tuple]], Iterator]


@dataclass
class Filled:
    index: faiss.Index            # trained, every part merged in (the tuning queries not yet added)
    ids: pa.Array                 # the corpus ids of its rows
    samples: Samples
    truth: np.ndarray             # the tuning queries' exact top-k rows over what the index holds
    store_path: Path | None
    trained_on: int
    reused: int                   # parts finished by an earlier run and reused
    nodes: dict                   # Ray node id -> parts it added in this run
    queries_added: bool = False   # on disk: the tuning queries are in the index already, as its last rows


def in_this_process(function: Callable, calls: list[tuple]) -> Iterator:
    """The Runner of a parallel build run here (the local runner's on-disk build): one unit after another."""
    for call in calls:
        yield function(*call)


def build_dir_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.build")


def fill_in_parallel(vectors: VectorSet, index: faiss.Index, factory: str, config: IndexConfig, build: Path,
                     store_dtype: str | None, run: Runner, scratch: Path, on_disk: bool = False) -> Filled:
    """Sample, train, add every shard in parallel and merge (``on_disk``: into scratch/index.ivfdata);
    see the module docstring."""
    check_parallel_factory(index, factory)
    fast_scan = "fs" in factory.split(",")[-1]
    if fast_scan:  # trained and added as plain 4-bit IVF-PQ, whose lists merge; converted after the merge
        index = make_index(mergeable_factory(factory), index.d, config.metric)
    location = str(vectors.path)
    plan_key = {"manifest_sha256": vectors.manifest_sha256(), "factory": factory, "store_dtype": store_dtype,
                "config": {k: v for k, v in vars(config).items() if k not in ("runner", "ray_address")}}
    plan = read_json(build / PLAN_FILE)
    if not _plan_holds(plan, plan_key, build):
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        plan = _plan_and_train(vectors, index, factory, config, build, plan_key, run)
    else:
        log.info("reusing the trained index of an earlier run in %s", build)
    held_out = np.asarray(plan["held_out"], dtype=np.int64)
    parts = _parts(vectors, location, held_out)
    done = {p.number: r for p in parts if (r := _finished(build, p)) is not None}
    if done:
        log.info("reusing %d finished part(s) of %d from an earlier run", len(done), len(parts))
    todo = [p for p in parts if p.number not in done]
    args = [(p, str(build), uuid.uuid4().hex[:8], config.metric, store_dtype) for p in todo]
    nodes: dict = {}
    for receipt in run(add_part, args):
        done[receipt["part"]] = receipt
        node = receipt.get("node") or "this process"
        nodes[node] = nodes.get(node, 0) + 1
        log.info("part %d added: %d vectors (%d of %d)", receipt["part"], receipt["rows"], len(done), len(parts))
    merged = faiss.read_index(str(build / TRAINED_FILE))
    truth_heap = None
    queries = np.load(build / QUERIES_FILE)
    if len(queries):
        truth_heap = faiss.ResultHeap(len(queries), RECALL_K, keep_max=(config.metric == "ip"))
    ivf = ivf_of(merged)
    for part in parts:
        receipt = done[part.number]
        if not on_disk:
            lists = read_lists(build / receipt["files"]["lists"])
            ivf.invlists.merge_from(lists, 0)  # the entries move over; the part's lists are left empty
            ivf.ntotal += int(receipt["rows"])
            del lists
        if truth_heap is not None:
            distances, rows = np.load(build / receipt["files"]["truth"])
            truth_heap.add_result(distances.astype(np.float32), rows.astype(np.int64))
    if on_disk:
        kept = sum(int(done[p.number]["rows"]) for p in parts)
        lists = [build / done[p.number]["files"]["lists"] for p in parts]
        if len(queries):
            lists.append(_queries_lists(build, queries, kept))
        merged = merge_on_disk(merged, lists, scratch / IVFDATA_FILE)
    else:
        merged.ntotal = ivf.ntotal  # the wrappers (OPQ, ...) count what their IVF holds
    if fast_scan and not on_disk:   # (on disk, build.py passes the plain factory: ondisk.plan_lists)
        merged = to_fast_scan(faiss.downcast_index(merged))
    store_path = None
    if store_dtype:
        store_path = scratch / "exact.npy"
        write_exact_store(store_path, _store_rows(build, [done[p.number] for p in parts]), store_dtype)
    ids = concat_ids([_kept_ids(vectors, p) for p in parts], vectors)
    truth = np.empty((0, RECALL_K), np.int64)
    if truth_heap is not None:
        truth_heap.finalize()
        truth = truth_heap.I
    query_ids = plan["query_ids"]
    samples = Samples(held_out, query_ids, queries, None)
    return Filled(merged, ids, samples, truth, store_path, plan["trained_on"], len(parts) - len(todo), nodes,
                  queries_added=on_disk and len(queries) > 0)


def _queries_lists(build: Path, queries: np.ndarray, first_label: int) -> Path:
    """The held-out tuning queries added into a copy of the trained index as labels from ``first_label``
    (after every part's rows), its lists written as one more part's."""
    index = faiss.read_index(str(build / TRAINED_FILE))
    index.add_with_ids(queries, np.arange(first_label, first_label + len(queries)))
    path = build / "queries.lists"
    write_lists(ivf_of(index).invlists, path)
    return path


def mergeable_factory(factory: str) -> str:
    """``IVF4096,PQ192x4fs`` -> ``IVF4096,PQ192x4np`` (``np``: without the polysemous training plain IVF-PQ
    does by default, which fast-scan does not do and which only slows training): FAISS 1.15 cannot merge
    fast-scan inverted lists
    (BlockInvertedLists.add_entries copies whole blocks past the end of a list that is not empty: heap
    corruption, seen as an abort at the 24th part), so parts hold plain 4-bit PQ codes, the same codes
    in another layout, and the merged index is converted (IndexIVFPQFastScan(IndexIVFPQ))."""
    return factory[:-2] + "np" if factory.endswith("x4fs") else factory


def to_fast_scan(ivf_pq: faiss.IndexIVFPQ) -> faiss.IndexIVFPQFastScan:
    """The same codes in fast-scan blocks; the new index takes over the coarse quantizer (the conversion
    shares it), so freeing the IVF-PQ index and its lists leaves it alive."""
    converted = faiss.IndexIVFPQFastScan(ivf_pq)
    ivf_pq.own_fields, converted.own_fields = False, True
    return converted


def check_parallel_factory(index: faiss.Index, factory: str) -> None:
    """Partial indexes merge by their inverted lists: an IVF factory (fast-scan codes only as IVF-PQ
    with nothing in front), or one line saying so."""
    if ivf_of(index) is None:
        raise EmbedpipeError(f"the parallel build merges inverted lists, so it needs an IVF factory, not {factory!r}; "
                             "use runner=local for it", fields=("runner",))
    fast_scan = "fs" in factory.split(",")[-1]
    plain_ivf_pq = isinstance(faiss.downcast_index(index), faiss.IndexIVFPQFastScan)
    if fast_scan and not (factory.endswith("x4fs") and plain_ivf_pq):
        raise EmbedpipeError(f"the parallel build converts fast-scan codes only for IVF…,PQ…x4fs factories, not "
                             f"{factory!r}; use runner=local for it", fields=("runner",))


def _parts(vectors: VectorSet, location: str, held_out: np.ndarray) -> list[Part]:
    parts, first_row, first_label = [], 0, 0
    for number, shard in enumerate(vectors.manifest["shards"]):
        rows = int(shard["rows"])
        lo, hi = np.searchsorted(held_out, [first_row, first_row + rows])
        held = tuple(int(r - first_row) for r in held_out[lo:hi])
        parts.append(Part(number, location, shard, first_row, first_label, held))
        first_row += rows
        first_label += rows - len(held)
    return parts


def _plan_holds(plan: dict | None, plan_key: dict, build: Path) -> bool:
    """Whether an earlier run's plan.json was made for these vectors and this config, and is whole."""
    if plan is None or plan.get("key") != json.loads(json.dumps(plan_key, default=str)):
        return False
    held, ids = plan.get("held_out"), plan.get("query_ids")
    return (isinstance(held, list) and all(isinstance(r, int) and not isinstance(r, bool) for r in held)
            and isinstance(ids, list) and len(ids) == len(held) and isinstance(plan.get("trained_on"), int)
            and (build / TRAINED_FILE).exists() and (build / QUERIES_FILE).exists())


def _finished(build: Path, part: Part) -> dict | None:
    """The receipt of a part an earlier run finished, when it names its own attempt's files (nothing
    else is read) and they are all there."""
    receipt = read_json(build / receipt_name(part.number))
    if receipt is None or receipt.get("first_label") != part.first_label or receipt.get("part") != part.number:
        return None
    attempt, files = receipt.get("attempt"), receipt.get("files")
    if not isinstance(attempt, str) or not isinstance(files, dict) or not isinstance(receipt.get("rows"), int):
        return None
    expected = part_files(part.number, attempt)
    if any(expected.get(key) != name for key, name in files.items()) or "lists" not in files:
        return None
    if not all((build / name).is_file() for name in files.values()):
        return None
    return receipt


def _plan_and_train(vectors: VectorSet, index: faiss.Index, factory: str, config: IndexConfig, build: Path,
                    plan_key: dict, run: Runner) -> dict:
    """Draw the tuning queries and the training sample (each worker reads its own shard's rows), train,
    and write the trained index, the queries and plan.json to ``build``."""
    n, rng = vectors.rows, np.random.default_rng(config.seed)
    n_queries = min(config.tuning_queries, max(n // 10, 1))
    n_train = min(training_rows(n, nlist_of(index)), n - n_queries)
    rows = rng.choice(n, size=n_queries + n_train, replace=False)
    held_out = np.sort(rows[:n_queries])
    parts = _parts(vectors, str(vectors.path), np.empty(0, np.int64))
    wanted = np.sort(rows)
    args = []
    for part in parts:
        lo, hi = np.searchsorted(wanted, [part.first_row, part.first_row + int(part.shard["rows"])])
        if hi > lo:
            args.append((part, [int(r - part.first_row) for r in wanted[lo:hi]]))
    by_part = {}
    for number, picked in run(_sample_part, args):
        by_part[number] = picked
    sample = np.concatenate([by_part[p.number] for p in parts if p.number in by_part])  # rows in `wanted` order
    del by_part   # the sample is held once while training (at 1M: 315 MB a copy)
    is_query = np.isin(wanted, held_out)
    queries, train = sample[is_query], sample[~is_query]
    del sample
    query_ids = _ids_at(vectors, parts, held_out)
    trained = min(len(train), n_train)
    train_index(index, factory, train[:trained])
    with atomic_path(build / TRAINED_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(build / QUERIES_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, queries)
    plan = {"key": json.loads(json.dumps(plan_key, default=str)), "held_out": held_out.tolist(),
            "query_ids": query_ids, "trained_on": trained}
    write_json_atomic(build / PLAN_FILE, plan)
    return plan


def _sample_part(part: Part, rows: list[int]) -> tuple[int, np.ndarray]:
    return part.number, read_rows(part, rows)


def _shard_ids(vectors: VectorSet, part: Part) -> pa.Array:
    """The id column of one shard (the vectors are not read)."""
    try:
        with vectors.store.filesystem.open_input_file(vectors.store.path(part.shard["file"])) as f:
            return pq.read_table(f, columns=["id"]).column("id").combine_chunks()
    except (OSError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read the ids of vector shard {part.shard['file']}: {e}") from None


def _kept_ids(vectors: VectorSet, part: Part) -> pa.Array:
    ids = _shard_ids(vectors, part)
    if not part.held_out:
        return ids
    keep = np.ones(len(ids), dtype=bool)
    keep[list(part.held_out)] = False
    return ids.filter(pa.array(keep))


def _ids_at(vectors: VectorSet, parts: list[Part], rows: np.ndarray) -> list:
    out = []
    for part in parts:
        lo, hi = np.searchsorted(rows, [part.first_row, part.first_row + int(part.shard["rows"])])
        if hi > lo:
            ids = _shard_ids(vectors, part)
            out += ids.take(pa.array(rows[lo:hi] - part.first_row)).to_pylist()
    return out


def _store_rows(build: Path, receipts: list[dict], chunk_rows: int = 65_536) -> Iterable[np.ndarray]:
    """The parts' store rows in index order, a chunk at a time (memory-mapped, never all in RAM)."""
    for receipt in receipts:
        codes = open_exact_store(build / receipt["files"]["store"])
        for start in range(0, codes.rows, chunk_rows):
            yield codes.vectors(np.arange(start, min(codes.rows, start + chunk_rows)))
        if not codes.rows:
            yield np.empty((0, codes.dim), np.float32)


def finish_store(store_path: Path | None, queries: np.ndarray) -> dict | None:
    """The held-out tuning queries join the store last, as they join the index."""
    if store_path is None:
        return None
    return append_exact_store(store_path, [queries]) if len(queries) else open_exact_store(store_path).record()
