"""Inverted lists beyond the memory budget: merged straight into FAISS's on-disk inverted lists
(index.ivfdata, formats/ivfdata.py) and memory-mapped at search, so neither the build's driver nor the
search holds every list in RAM. In RAM stay the quantizers (IVF centroids, PQ / OPQ tables) and, per
list, where it lies in the file.

    >>> plan = plan_lists("IVF131072,PQ192x4fs", 131072, 96, 1_000_000_000, 384, 16 * 10**9, "auto")
    >>> plan.on_disk, plan.factory
    (True, 'IVF131072,PQ192x4np')
    >>> plan_lists("IVF4096,PQ192x4fs", 4096, 96, 1_000_000, 384, 4 * 10**9, "auto").on_disk
    False

Fast-scan lists (``...x4fs``) cannot live on disk (FAISS keeps them in interleaved blocks in RAM), so
an on-disk index holds the same 4-bit codes as plain IVF-PQ (``...x4np``: no polysemous training, which
fast-scan does not do either): the codes the parallel build trains and adds anyway
(parallel.mergeable_factory), searched without fast-scan's SIMD kernels.

The merge (``merge_on_disk``) reads every part's lists memory-mapped (IO_FLAG_MMAP) and writes each
list once into the file at its final size. Every entry goes in by that one merge, the held-out tuning
queries too (as a last part): FAISS 1.15's OnDiskInvertedLists cannot be added to after a merge (the
merge leaves the space it filled marked free, so an add overwrites lists), and growing a list would
double it in place. Tuning then searches with the queries' labels masked out (``WithoutRows``), which
finds exactly what the index without them finds.

`auto` goes on disk (build.py) when even the fast-scan route's codes exceed max_memory, with codes of
the same size that scan faster from disk: ``ondisk_route``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import BadInput, EmbedpipeError
from ..formats.ivfdata import IVFDATA_FILE, c_stdout_aside, on_disk_file
from .choose import ID_BYTES, ivf_centroids
from .factory import ivf_of
from .refine import budgeted_candidates

# inverted_lists settings: "auto" keeps the lists in RAM when they fit max_memory, else on disk;
# "ram" / "disk" force either (an index without inverted lists has nothing to place)
LISTS_CHOICES = ("auto", "ram", "disk")
_FAST_SCAN = re.compile(r"(PQ\d+x4)fs$")


@dataclass(frozen=True)
class ListsPlan:
    on_disk: bool
    factory: str          # what FAISS builds: a fast-scan factory turned plain IVF-PQ when on disk
    lists_bytes: int      # codes + ids of every list (n entries)
    reason: str

    def record(self) -> dict:
        return {"on": "disk" if self.on_disk else "ram", "estimated_bytes": self.lists_bytes, "reason": self.reason}


def lists_bytes(n: int, code_size: int) -> int:
    """What n entries of inverted lists take: a code and an int64 id each."""
    return n * (code_size + ID_BYTES)


def plan_lists(factory: str, nlist: int | None, code_size: int, n: int, dim: int, max_memory: int,
               setting: str = "auto") -> ListsPlan:
    """Where an index of ``factory`` (``nlist`` lists of ``code_size``-byte codes; None: no lists)
    keeps its inverted lists under ``max_memory`` bytes of RAM at search."""
    if nlist is None:
        if setting == "disk":
            raise BadInput(f"inverted_lists=disk needs an IVF factory; {factory!r} has no inverted lists",
                           fields=("inverted_lists",))
        return ListsPlan(False, factory, 0, "the index has no inverted lists")
    need = lists_bytes(n, code_size)
    quantizer = nlist * dim * 4
    if setting == "ram":
        return ListsPlan(False, factory, need, "inverted_lists=ram: the lists in RAM as the factory says")
    if setting == "disk":
        why = "inverted_lists=disk: the lists memory-mapped from " + IVFDATA_FILE
    elif need + quantizer <= max_memory:
        return ListsPlan(False, factory, need, f"the inverted lists ({need} bytes) and centroids ({quantizer}) "
                                               f"fit max_memory ({max_memory}): in RAM")
    else:
        why = (f"the inverted lists ({need} bytes) and centroids ({quantizer}) exceed max_memory ({max_memory}): "
               f"memory-mapped from {IVFDATA_FILE} on disk")
    plain = _FAST_SCAN.sub(r"\1np", factory)
    if plain != factory:
        why += f"; fast-scan lists cannot be on disk, so the same 4-bit codes as plain IVF-PQ ({plain})"
    elif "fs" in factory.split(",")[-1]:
        raise BadInput(f"{factory!r} keeps fast-scan lists, which cannot be on disk; name an IVF…,PQ…x4fs or "
                       "plain IVF-PQ factory, or allow more max_memory", fields=("inverted_lists",))
    return ListsPlan(True, plain, need, why)


def ondisk_ram_bytes(n: int, dim: int) -> int:
    """What ``ondisk_route``'s index holds in RAM at search: the centroids, where each list lies (size,
    capacity, offset: 24 bytes a list) and the PQ tables (256 centroids of 4 dims per byte of code)."""
    nlist = ivf_centroids(n)
    return nlist * (dim * 4 + 24) + dim * 256 * 4


def ondisk_route(n: int, dim: int, max_memory: int) -> str | None:
    """The factory `auto` takes when no route's lists fit the budget: dim/4-byte codes as in the fast-scan
    route, but 8-bit PQ over 4 dimensions (plain 4-bit codes scan ~3.7x slower than 8-bit ones of the same
    size off disk; scripts/bench_index_scale.py), kept on disk and refined by exact scores (moved to the
    exact store); None when even its RAM at search (ondisk_ram_bytes) exceeds ``max_memory``, or 4 does
    not divide dim.

    >>> ondisk_route(1_000_000_000, 384, 16 * 10**9)
    'IVF131072,PQ96x8np,RFlat'
    """
    if dim % 4 or ondisk_ram_bytes(n, dim) > max_memory:
        return None
    return f"IVF{ivf_centroids(n)},PQ{dim // 4}x8np,RFlat"


def auto_candidates(n: int, dim: int, max_memory: int, setting: str = "auto") -> list[str]:
    """The routes `auto` measures (refine.budgeted_candidates), plus ``ondisk_route`` when no fast-scan
    route's lists fit the budget (what fits in RAM then has tiny codes, which miss the recall target).

    >>> auto_candidates(10**9, 384, 16 * 10**9)
    ['OPQ4_28,IVF131072_HNSW32,PQ4x8np', 'IVF131072,PQ96x8np,RFlat']
    """
    candidates = budgeted_candidates(n, dim, max_memory)
    route = ondisk_route(n, dim, max_memory) if setting != "ram" else None
    if route and candidates != ["Flat"] and not any("x4fs" in f for f in candidates):
        candidates.append(route)
    return candidates


def refuse_append(info: dict, where: str) -> None:
    """Appending to on-disk lists is refused: the published index.ivfdata is never changed in place
    (readers map it), and a new version would copy or re-merge the whole file for a few new vectors."""
    if on_disk_file(info) is not None:
        raise BadInput(f"{where} keeps its inverted lists on disk ({on_disk_file(info)}), which append cannot extend; "
                       "rebuild the index over all the vectors (--overwrite without --append)",
                       fields=("append",))


def read_lists_mapped(path: Path) -> faiss.InvertedLists:
    """A part's inverted lists (parts.py wrote them as FAISS array lists) mapped from their file, not read."""
    reader = faiss.FileIOReader(str(path))
    try:
        with c_stdout_aside(drop=True):
            return faiss.read_InvertedLists(reader, faiss.IO_FLAG_MMAP)
    finally:
        del reader


def merge_on_disk(index: faiss.Index, part_lists: list[Path], ivfdata: Path) -> faiss.Index:
    """Every part's lists merged into ``ivfdata`` (whose name must stay IVFDATA_FILE: readers look for
    that name beside index.faiss), which then becomes ``index``'s lists; ``index`` must be empty.
    The parts are mapped, not read, and each merged list is written once: RAM stays near one page set."""
    ivf = ivf_of(index)
    if ivf is None or index.ntotal:
        raise EmbedpipeError("the on-disk merge needs an empty trained IVF index")
    if ivfdata.name != IVFDATA_FILE:
        raise EmbedpipeError(f"on-disk lists must be written as {IVFDATA_FILE}, not {ivfdata.name}")
    mapped = [read_lists_mapped(p) for p in part_lists]
    for lists in mapped:
        if lists.nlist != ivf.nlist or lists.code_size != ivf.code_size:
            raise EmbedpipeError(f"a part's lists ({lists.nlist} lists of {lists.code_size}-byte codes) do not "
                                 f"match the trained index ({ivf.nlist} of {ivf.code_size}); rebuild")
    merged = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(ivfdata))
    pointers = faiss.InvertedListsPtrVector()
    for lists in mapped:
        pointers.push_back(lists)
    with c_stdout_aside():
        ntotal = merged.merge_from_multiple(pointers.data(), pointers.size(), False, False)
    ivf.replace_invlists(merged, True)
    merged.this.disown()   # the index owns it now
    index.ntotal = ivf.ntotal = ntotal   # the wrappers (OPQ, ...) count what their IVF holds
    del mapped
    return index


def on_disk_bytes(index: faiss.Index) -> int:
    """The size of the on-disk lists' file (codes, ids and any slack), as the index records it."""
    return int(faiss.downcast_InvertedLists(ivf_of(index).invlists).totsize)


class WithoutRows:
    """``index`` searched as if it held only its first ``rows`` labels (the on-disk index holds the
    tuning queries already while they are tuned on): IVF search parameters with an IDSelectorRange,
    the nprobe of the moment copied in. Has what refine.StoreRefined uses of an index."""

    def __init__(self, index: faiss.Index, rows: int):
        self.index, self.ntotal, self.d = index, rows, index.d
        self._selector = faiss.IDSelectorRange(0, rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ivf = ivf_of(self.index)
        params = faiss.SearchParametersIVF(sel=self._selector, nprobe=ivf.nprobe, max_codes=ivf.max_codes)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)

