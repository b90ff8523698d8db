"""FAISS indexes over vector directories. Imports point down this list (factory imports nothing of
index/; build and append sit on top):

    factory.py  a factory string -> an empty index; FAISS metrics, threads, training, HNSW / IVF settings
    params.py   search parameters (nprobe / efSearch) tuned to a target recall; exact top-k; recall@k
    compact.py  binary / SQ8 indexes over compact codes, rescored from the exact store
    load.py     open an index directory for search
    exact_store.py  vectors in index order on local disk (.npy, memory-mapped) to rescore candidates exactly
    refine.py   the refine step under max_memory: floats in RAM when they fit, else re-ranked from an exact store
    choose.py   which factory fits n vectors of dim under a memory budget (autofaiss' ladder); parse sizes
    measure.py  build and time candidate factories on a sample, for `auto`'s measured choice
    config.py   IndexConfig: what a build takes, checked when made
    source.py   the vector directory an index holds: ids joined, rows counted, provenance for index.json
    spans.py    over chunks: each row's doc id and span in index order (spans.arrow); chunked vs whole refused
    samples.py  the tuning queries and training sample a build draws from the vectors
    ondisk.py   inverted lists beyond max_memory: merged into index.ivfdata on disk, memory-mapped at search
    parts.py    one unit of a parallel build: a vector shard added into a partial index, receipt last
    parallel.py  the parallel build: train once on a sample, parts added by workers, merged; a rerun resumes
    parallel_ray.py  the parallel build's units as Ray tasks (encode's cluster joining), lost ones rerun once
    build.py    build an index directory from a vector directory
    append.py   add the new shards of a grown vector directory to an index directory
"""

from .append import append_index
from .build import build_index
from .config import IndexConfig
from .load import LoadedIndex, open_index

__all__ = ["IndexConfig", "LoadedIndex", "append_index", "build_index", "open_index"]
