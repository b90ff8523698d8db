"""Choosing a FAISS index for a corpus under a memory budget, the way autofaiss does.

The ladder, from best recall per query to smallest memory (FAISS wiki, "Guidelines to choose an
index"): exact search for small corpora, HNSW when its graph fits, IVF over full vectors, and
OPQ-rotated product codes in an IVF for corpora too large for anything else. From
MEASURED_CHOICE_MIN_ROWS vectors on, `auto` measures the routes that fit (candidate_factories, timed
by measure.py) and takes the fastest that reaches the target (pick_measured).

    >>> choose_factory(n=88_000, dim=384, max_memory=parse_size("4GB"))
    'HNSW32'
"""

from __future__ import annotations

import math
import re

from ..errors import EmbedpipeError

# Below this many vectors exact search takes well under a millisecond per query, and quantizers
# could not be trained well anyway (k-means wants ~39 points per centroid).
FLAT_MAX_ROWS = 10_000
# IVF without compression only up to here; beyond it, full vectors cost more than the budget is
# usually meant for, and autofaiss goes to product quantization as well.
IVF_FLAT_MAX_ROWS = 10_000_000
HNSW_MAX_M = 32
HNSW_MIN_M = 8
# FAISS guidance: between 30*nlist and 256*nlist training points for the coarse quantizer; 30k is
# enough for the 256-centroid sub-quantizers of PQ, and past 256k k-means only gets slower.
MIN_TRAIN_ROWS = 30_000
MAX_TRAIN_ROWS = 256_000
TRAIN_ROWS_PER_CENTROID = 50
MIN_ROWS_PER_CENTROID = 39
ID_BYTES = 8  # an IVF list stores an int64 id beside every code
# `auto` measures its candidates (candidate_factories) on a sample from this many vectors on: below,
# the ladder's first rung that fits (HNSW or exact search) is the fastest route to the target anyway
# and measuring would cost more than the build.
MEASURED_CHOICE_MIN_ROWS = 200_000
CHOICE_SAMPLE_ROWS = 100_000

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """'4GB' -> 4_000_000_000; '512MiB' -> 536_870_912; an int is taken as bytes."""
    if isinstance(text, bool):  # True is an int to Python, not a size to anyone
        raise EmbedpipeError(f"cannot read the size {text!r}; write it like 4GB, 512MB or 2GiB")
    if isinstance(text, int):
        if text <= 0:
            raise EmbedpipeError(f"size {text!r} must be positive")
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise EmbedpipeError(f"cannot read the size {text!r}; write it like 4GB, 512MB or 2GiB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise EmbedpipeError(f"size {text!r} must be positive")
    return size


def ivf_centroids(n: int) -> int:
    """A power of two near 4*sqrt(n), lowered until k-means gets >= 39 points per centroid from
    the 90% of the corpus that is not held out as tuning queries.

    >>> ivf_centroids(1_000_000)
    4096
    """
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(n), 1)))
    while nlist > 1 and 0.9 * n < MIN_ROWS_PER_CENTROID * nlist:
        nlist //= 2
    return max(nlist, 1)


def training_rows(n: int, nlist: int | None) -> int:
    """How many vectors to train on: enough for k-means, no more (all of them for small corpora)."""
    want = MIN_TRAIN_ROWS if not nlist else TRAIN_ROWS_PER_CENTROID * nlist
    return min(n, max(MIN_TRAIN_ROWS, min(want, MAX_TRAIN_ROWS)))


def hnsw_bytes(n: int, dim: int, m: int) -> int:
    """Full vectors plus 2*M int32 neighbour links per vector on the base layer."""
    return n * (4 * dim + 2 * m * 4)


def ivf_flat_bytes(n: int, dim: int, nlist: int) -> int:
    return n * (4 * dim + ID_BYTES) + nlist * dim * 4


def ivf_pq_bytes(n: int, dim: int, nlist: int, code_bytes: int, opq_dim: int) -> int:
    return n * (code_bytes + ID_BYTES) + nlist * opq_dim * 4 + dim * opq_dim * 4


def _ivf_flat_fits(n: int, dim: int, nlist: int, max_memory: int) -> bool:
    return n <= IVF_FLAT_MAX_ROWS and ivf_flat_bytes(n, dim, nlist) <= max_memory


def _opq_dim(dim: int, code_bytes: int) -> int:
    """The OPQ output width: a multiple of the code size (which PQ needs), a bit above dim (which loses nothing)."""
    return (min(dim // code_bytes, 6) + 1) * code_bytes


def choose_factory(n: int, dim: int, max_memory: int) -> str:
    """The FAISS factory string autofaiss would pick first for n vectors of dim under max_memory bytes.

    >>> choose_factory(5_000, 384, 10**9), choose_factory(1_000_000, 384, 10**8)
    ('Flat', 'OPQ64_448,IVF4096_HNSW32,PQ64x8np')
    """
    if n < FLAT_MAX_ROWS:
        return "Flat"
    hnsw_m = min(HNSW_MAX_M, (max_memory // n - 4 * dim) // 8)
    if hnsw_m >= HNSW_MIN_M:
        return f"HNSW{hnsw_m}"
    nlist = ivf_centroids(n)
    if _ivf_flat_fits(n, dim, nlist, max_memory):
        return f"IVF{nlist},Flat"
    return _quantized_factory(n, dim, nlist, max_memory)


def _quantized_factory(n: int, dim: int, nlist: int, max_memory: int) -> str:
    """OPQ + IVF + PQ with the largest code (best recall) that fits; errors if even 4 bytes won't."""
    for code_bytes in (256, 128, 64, 48, 32, 24, 16, 8, 4):
        if code_bytes >= dim:
            continue
        opq_dim = _opq_dim(dim, code_bytes)
        if ivf_pq_bytes(n, dim, nlist, code_bytes, opq_dim) <= max_memory:
            coarse = f"IVF{nlist}_HNSW32" if nlist >= 1024 else f"IVF{nlist}"
            # 'np': no polysemous training, which only serves Hamming-threshold search and made
            # training ~15x slower in our measurements
            return f"OPQ{code_bytes}_{opq_dim},{coarse},PQ{code_bytes}x8np"
    need = ivf_pq_bytes(n, dim, nlist, 4, _opq_dim(dim, 4))
    raise EmbedpipeError(f"no index for {n} vectors of dimension {dim} fits in {max_memory} bytes "
                         f"(the smallest needs about {need}); raise max_memory", fields=("max_memory",))


def fastscan_refine_bytes(n: int, dim: int, nlist: int) -> int:
    """IVF with 4-bit fast-scan PQ codes (dim/2 sub-quantizers: dim/4 bytes) + full vectors to refine."""
    return n * (dim // 4 + ID_BYTES + 4 * dim) + nlist * dim * 4


def candidate_factories(n: int, dim: int, max_memory: int) -> list[str]:
    """The routes `auto` measures for n vectors under max_memory: the ladder's choice, HNSW32, IVF over
    full vectors, and IVF with 4-bit fast-scan PQ codes whose top hits are re-ranked exactly
    (`RFlat`), each only where it fits.

    >>> candidate_factories(1_000_000, 384, parse_size("4GB"))
    ['HNSW32', 'IVF4096,Flat', 'IVF4096,PQ192x4fs,RFlat']
    >>> candidate_factories(1_000_000, 384, parse_size("1.6GB"))
    ['HNSW8', 'IVF4096,Flat']
    """
    first = choose_factory(n, dim, max_memory)
    if first == "Flat":
        return [first]
    nlist = ivf_centroids(n)
    out = [first]
    if hnsw_bytes(n, dim, HNSW_MAX_M) <= max_memory:
        out.append(f"HNSW{HNSW_MAX_M}")
    if _ivf_flat_fits(n, dim, nlist, max_memory):
        out.append(f"IVF{nlist},Flat")
    if dim % 2 == 0 and fastscan_refine_bytes(n, dim, nlist) <= max_memory:
        out.append(f"IVF{nlist},PQ{dim // 2}x4fs,RFlat")
    return list(dict.fromkeys(out))


def pick_measured(rows: list[dict]) -> dict:
    """The fastest route that reached the target; the one with the best recall when none did."""
    reached = [r for r in rows if r["reached"]]
    return max(reached, key=lambda r: r["qps"]) if reached else max(rows, key=lambda r: r["recall_at_10"])
