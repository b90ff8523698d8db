"""One unit of a parallel build: a vector shard added into a copy of the trained index (a partial index),
with its rows for the exact store and the exact top-k of the tuning queries over them, written to the
build directory by whoever ran it (a Ray worker, or this process).

    >>> add_part(Part(3, "c.vectors", shard, 15_000, 14_950, (7, 90)), build, "1a2b3c4d", "ip", None)  # doctest: +SKIP

Files of part N, attempt A (a rerun or a retried unit writes under a new attempt, so a dead worker's
half-written files never mix with a live one's):

    part-N-A.lists   the partial index's inverted lists (this shard's codes, labelled by index row), without
                     the trained quantizers every part shares (201 MB of centroids per part at 1B vectors)
    part-N-A.npy     the shard's vectors in index order for the exact store (when the build has one)
    part-N-A.truth.npy  (2, queries, k): exact scores and index rows of the tuning queries' top k here
    part-N.json      the receipt, written last (atomically): a part is finished when its receipt exists

Vectors never pass through the driver: each worker reads its own shard from the vector directory
(a path every node sees, or an object store URL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import CorruptArtifact
from ..formats.vectors import VectorSet, open_vectors
from ..fsio import atomic_path, write_json_atomic
from .exact_store import write_exact_store
from .factory import ivf_of
from .params import RECALL_K, ExactTopK

TRAINED_FILE, QUERIES_FILE, PLAN_FILE = "trained.faiss", "queries.npy", "plan.json"


@dataclass(frozen=True)
class Part:
    number: int
    vectors: str             # the vector directory (path or URL) as the driver named it
    shard: dict              # its manifest entry: file, rows, sha256
    first_row: int           # the shard's first row in the vector directory
    first_label: int         # the index row its first kept vector gets
    held_out: tuple = ()     # rows of this shard (0-based in it) kept out: the tuning queries


def part_files(number: int, attempt: str) -> dict[str, str]:
    stem = f"part-{number:05d}-{attempt}"
    return {"lists": f"{stem}.lists", "store": f"{stem}.npy", "truth": f"{stem}.truth.npy"}


def receipt_name(number: int) -> str:
    return f"part-{number:05d}.json"


def shard_set(location: str, shard: dict) -> VectorSet:
    """The vector directory at ``location`` narrowed to one shard (read by the worker itself)."""
    vectors = open_vectors(location)
    return VectorSet(vectors.store, {**vectors.manifest, "shards": [shard], "rows": int(shard["rows"])})


def read_lists(path: Path) -> faiss.InvertedLists:
    """A part's inverted lists, as add_part wrote them."""
    reader = faiss.FileIOReader(str(path))
    try:
        return faiss.read_InvertedLists(reader)
    finally:
        del reader


def write_lists(lists: faiss.InvertedLists, path: Path) -> None:
    """Inverted lists to ``path`` (atomically), in the layout read_lists and ondisk.read_lists_mapped read."""
    with atomic_path(path) as tmp:
        writer = faiss.FileIOWriter(str(tmp))
        faiss.write_InvertedLists(lists, writer)
        del writer  # closes the file


def read_rows(part: Part, rows: list[int], batch_rows: int = 65_536) -> np.ndarray:
    """The vectors at ``rows`` (0-based in the part's shard, sorted) for the training sample."""
    wanted, out, start = np.asarray(rows, dtype=np.int64), [], 0
    for _, batch in shard_set(part.vectors, part.shard).iter_batches(batch_rows):
        lo, hi = np.searchsorted(wanted, [start, start + len(batch)])
        out.append(batch[wanted[lo:hi] - start])
        start += len(batch)
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def add_part(part: Part, build_dir: str, attempt: str, metric: str, store_dtype: str | None,
             batch_rows: int = 65_536) -> dict:
    """Add ``part``'s shard into the trained index of ``build_dir``; write its files and, last, its receipt."""
    started = time.monotonic()
    build = Path(build_dir)
    index = faiss.read_index(str(build / TRAINED_FILE))
    queries = np.load(build / QUERIES_FILE)
    exact = ExactTopK(queries, RECALL_K, metric) if len(queries) else None
    files = part_files(part.number, attempt)
    held = np.asarray(part.held_out, dtype=np.int64)
    counts = {"read": 0, "added": 0}

    def kept_batches():
        for _, batch in shard_set(part.vectors, part.shard).iter_batches(batch_rows):
            start = counts["read"]
            counts["read"] += len(batch)
            if len(held):
                batch = batch[~np.isin(np.arange(start, start + len(batch)), held)]
            if len(batch):  # an empty batch (every row held out) still reaches the store: it fixes the dim
                first = part.first_label + counts["added"]
                index.add_with_ids(batch, np.arange(first, first + len(batch)))
                if exact is not None:
                    exact.add(batch, first)
                counts["added"] += len(batch)
            yield batch

    if store_dtype:
        write_exact_store(build / files["store"], kept_batches(), store_dtype)
    else:
        for _ in kept_batches():
            pass
    if counts["read"] != int(part.shard["rows"]):
        raise CorruptArtifact(f"vector shard {part.shard['file']} holds {counts['read']} rows, "
                              f"the manifest says {part.shard['rows']}")
    write_lists(ivf_of(index).invlists, build / files["lists"])
    if exact is not None:
        distances, rows = exact.result()
        with atomic_path(build / files["truth"]) as tmp, open(tmp, "wb") as f:
            np.save(f, np.stack([distances.astype(np.float64), rows.astype(np.float64)]))
    receipt = {"part": part.number, "attempt": attempt, "rows": counts["added"], "first_label": part.first_label,
               "seconds": round(time.monotonic() - started, 3),
               "files": {k: v for k, v in files.items() if (build / v).exists()}}
    write_json_atomic(build / receipt_name(part.number), receipt)
    return receipt
