"""The index directory contract: what `embedpipe index` writes and `search` / `evaluate` load.

    INDEX_DIR/index.faiss    the FAISS index; row i of the index is row i of ids.parquet
    INDEX_DIR/ids.parquet    id: the corpus id of every row
    INDEX_DIR/index.json     factory, metric, n, dim, build seconds, memory, search parameters,
                             measured recall@10 vs exact search, and the encoder manifest (written last)

Readers check the three files against each other, so a truncated or swapped file is one clear line.

    >>> info = read_info(Path("corpus.index"))           # doctest: +SKIP
    >>> index, ids = read_faiss(path, info), read_ids(path, info["n"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadInput, CorruptArtifact
from ..fsio import staged_dir, write_json_atomic

INDEX_FILE, IDS_FILE, INFO_FILE = "index.faiss", "ids.parquet", "index.json"
FORMAT_VERSION = 1
METRICS = ("ip", "l2")


def read_info(path: Path) -> dict:
    info_path = path / INFO_FILE
    if not info_path.exists():
        raise BadInput(f"{path} is not an embedpipe index directory (no {INFO_FILE}); "
                             "build one with `embedpipe index`")
    try:
        info = json.loads(info_path.read_text())
        int(info["n"]), int(info["dim"]), METRICS.index(info["metric"]), info["factory"]
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptArtifact(f"{info_path} is not a valid embedpipe index description ({e})") from None
    return info


def read_faiss(path: Path, info: dict) -> faiss.Index:
    index_path = path / INDEX_FILE
    if not index_path.exists():
        raise CorruptArtifact(f"{path}: {INDEX_FILE} is missing")
    size, expected = index_path.stat().st_size, info.get("memory_bytes")
    if expected is not None and size != expected:
        raise CorruptArtifact(f"{index_path} has {size} bytes, {INFO_FILE} says {expected}: "
                             "truncated or replaced; rebuild it with `embedpipe index`")
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError:
        raise CorruptArtifact(f"{index_path} cannot be read by FAISS (truncated or corrupt); "
                             "rebuild it with `embedpipe index`") from None
    if index.d != int(info["dim"]):
        raise CorruptArtifact(f"{index_path} holds vectors of dimension {index.d}, {INFO_FILE} says {info['dim']}")
    if index.ntotal != int(info["n"]):
        raise CorruptArtifact(f"{index_path} holds {index.ntotal} vectors, {INFO_FILE} says {info['n']}")
    return index


def read_ids(path: Path, n: int) -> pa.Array:
    ids_path = path / IDS_FILE
    try:
        table = pq.read_table(ids_path)
    except (OSError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read {ids_path}: {e}") from None
    if "id" not in table.column_names or table.num_rows != n:
        raise CorruptArtifact(f"{ids_path} must hold one 'id' per indexed vector ({n}); "
                             f"it has columns {table.column_names} and {table.num_rows} rows")
    return table.column("id").combine_chunks()


def write_index_dir(out: Path, index: faiss.Index, ids: pa.Array, describe: Callable[[int], dict]) -> dict:
    """index.faiss, ids.parquet and index.json (``describe(index_bytes)``), built in a staging
    directory that then replaces ``out`` in one rename; returns what index.json holds."""
    with staged_dir(out) as staging:
        faiss.write_index(index, str(staging / INDEX_FILE))
        pq.write_table(pa.table({"id": ids}), staging / IDS_FILE)
        info = describe((staging / INDEX_FILE).stat().st_size)
        write_json_atomic(staging / INFO_FILE, info)
    return info
