"""The refine step under a memory budget: re-rank an index's top candidates by exact scores, from the
float vectors in RAM (FAISS's ``RFlat``) only when they fit ``max_memory``, else from an exact store
memory-mapped from local disk (exact_store.py), so the RAM a search needs stays within the budget at
any corpus size.

    >>> plan = plan_refine("IVF16384,PQ192x4fs,RFlat", 10_000_000, 384, 4 * 10**9, "auto")
    >>> plan.factory, plan.store_dtype
    ('IVF16384,PQ192x4fs', 'float16')
    >>> plan_refine("IVF4096,PQ192x4fs,RFlat", 1_000_000, 384, 4 * 10**9, "auto").store_dtype is None
    True

``budgeted_candidates`` adds the fast-scan route to auto's candidates where its codes fit the budget but
its float vectors do not (refined from the store then); ``StoreRefined`` searches an index through its
store: k * k_factor candidates from FAISS, the best k of them by exact scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import EmbedpipeError
from .choose import candidate_factories, fastscan_refine_bytes, ivf_centroids
from .exact_store import ExactStore
from .params import REFINE_K_FACTOR

# exact_store settings: "auto" refines from a store when an in-RAM refine would not fit the budget;
# "none" keeps the factory as it is; a dtype always refines from a store of that dtype.
EXACT_STORE_CHOICES = ("auto", "none", "float16", "float32")
# float16 halves the store against float32; its rounding (~5e-4 relative) reorders only near-ties,
# which recall@10 against float32 exact search barely sees (tests/index/test_refine.py measures it).
AUTO_STORE_DTYPE = "float16"
_RFLAT = re.compile(r",(RFlat|Refine\(Flat\))$")


@dataclass(frozen=True)
class RefinePlan:
    factory: str                  # what FAISS builds (an RFlat moved to the store is cut off)
    store_dtype: str | None       # the exact store's dtype; None: no store
    k_factor: int                 # candidates per wanted hit that the store re-ranks
    reason: str                   # why, in words, for index.json

    def record(self) -> dict:
        return {"from": "exact_store" if self.store_dtype else "index", "dtype": self.store_dtype,
                "k_factor": self.k_factor if self.store_dtype else None, "reason": self.reason}


def float_bytes(n: int, dim: int) -> int:
    return n * dim * 4


def plan_refine(factory: str, n: int, dim: int, max_memory: int, setting: str = "auto") -> RefinePlan:
    """Where ``factory``'s refine step reads its vectors from, under ``max_memory`` bytes of RAM."""
    in_ram = bool(_RFLAT.search(factory))
    base = _RFLAT.sub("", factory)
    if setting == "none":
        return RefinePlan(factory, None, REFINE_K_FACTOR, "exact_store=none: the factory as given")
    if setting in ("float16", "float32"):
        return RefinePlan(base, setting, REFINE_K_FACTOR,
                          f"exact_store={setting}: candidates re-ranked from a memory-mapped {setting} store")
    if not in_ram:
        return RefinePlan(factory, None, REFINE_K_FACTOR, "the factory has no float refine step")
    need = float_bytes(n, dim)
    if need <= max_memory:
        return RefinePlan(factory, None, REFINE_K_FACTOR,
                          f"the float vectors for the refine step ({need} bytes) fit max_memory ({max_memory})")
    return RefinePlan(base, AUTO_STORE_DTYPE, REFINE_K_FACTOR,
                      f"the float vectors for the refine step ({need} bytes) exceed max_memory ({max_memory}): "
                      f"refined from a memory-mapped {AUTO_STORE_DTYPE} store on local disk instead")


def fastscan_codes_bytes(n: int, dim: int, nlist: int) -> int:
    """The fast-scan route's RAM without its float vectors (4-bit codes, ids, centroids)."""
    return fastscan_refine_bytes(n, dim, nlist) - float_bytes(n, dim)


def budgeted_candidates(n: int, dim: int, max_memory: int) -> list[str]:
    """auto's candidates (choose.candidate_factories), plus the fast-scan route with an exact refine
    where its codes fit ``max_memory`` and its float vectors do not: plan_refine moves that refine to
    the store.

    >>> budgeted_candidates(10_000_000, 384, 4 * 10**9)[-1]
    'IVF16384,PQ192x4fs,RFlat'
    """
    out = candidate_factories(n, dim, max_memory)
    if out == ["Flat"] or dim % 2:
        return out
    nlist = ivf_centroids(n)
    route = f"IVF{nlist},PQ{dim // 2}x4fs,RFlat"
    if route not in out and fastscan_codes_bytes(n, dim, nlist) <= max_memory:
        out.append(route)
    return out


class StoreRefined:
    """A FAISS index whose hits are re-ranked by an exact store: the search ``tune_search_params`` and
    LoadedIndex run. Scores: higher is better (negated squared L2 for "l2")."""

    def __init__(self, index: faiss.Index, store: ExactStore, metric: str, k_factor: int = REFINE_K_FACTOR):
        if store.rows != index.ntotal or store.dim != index.d:
            raise EmbedpipeError(f"the exact store {store.path} holds {store.rows} x {store.dim} vectors, "
                                 f"the index {index.ntotal} x {index.d}; rebuild the index")
        self.index, self.store, self.metric, self.k_factor = index, store, metric, k_factor

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        wanted = min(k * self.k_factor, self.index.ntotal)
        _, candidates = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), wanted)
        return self.store.rescore(queries, candidates, k, self.metric)
