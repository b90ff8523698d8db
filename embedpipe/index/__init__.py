"""FAISS indexes over vector directories.

    choose.py   which factory fits n vectors of dim under a memory budget (autofaiss' ladder)
    params.py   search parameters (nprobe / efSearch) tuned to a target recall; exact top-k
    build.py    build an index directory, or append new shards to one
    load.py     open an index directory for search
"""

from .build import IndexConfig, append_index, build_index
from .load import LoadedIndex, open_index

__all__ = ["IndexConfig", "LoadedIndex", "append_index", "build_index", "open_index"]
