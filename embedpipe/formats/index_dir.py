"""The index directory contract: what `embedpipe index` writes and `search` / `evaluate` load.

    INDEX_DIR/index.faiss    the FAISS index; row i of the index is row i of ids.parquet
    INDEX_DIR/ids.parquet    id: the corpus id of every row
    INDEX_DIR/ids.arrow      the same ids, uncompressed Arrow IPC, memory-mapped at search so only the
                             hits' ids are read (formats/index_ids.py; index.json's ids_file; absent in
                             indexes written before it, which read ids.parquet whole)
    INDEX_DIR/spans.arrow    over chunks only: each row's typed doc_id and character span (start, end),
                             memory-mapped at search (formats/index_spans.py; index.json's spans_file)
    INDEX_DIR/index.json     factory, metric, n, dim, build seconds, memory, search parameters,
                             measured recall@10 vs exact search, and the encoder manifest (written last)
    INDEX_DIR/tuning.parquet the queries the search parameters were tuned on (vector; id: the corpus id
                             of a held-out corpus vector, null for sample queries), so recall can be
                             measured again after an append (absent for exact indexes and older ones)
    INDEX_DIR/exact.npy      when index.json has an exact_store: the vectors in index order, memory-mapped
                             at search to re-rank the index's candidates (index/exact_store.py, refine.py)
    INDEX_DIR/index.ivfdata  when index.json's inverted_lists are on disk: the lists' codes and ids,
                             memory-mapped at search (formats/ivfdata.py, index/ondisk.py)

Readers check the three files against each other, so a truncated or swapped file is one clear line.

    >>> info = read_info(Path("corpus.index"))           # doctest: +SKIP
    >>> index, ids = read_faiss(path, info), read_ids(path, info["n"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadInput, CorruptArtifact
from ..fsio import staged_dir, write_json_atomic
from .index_ids import IDS_ARROW_FILE, IndexIds, open_ids_file, write_ids_file
from .index_spans import SPANS_FILE, SPANS_KEY, write_spans_file
from .ivfdata import ONDISK_READ_FLAGS, c_stdout_aside, check_ivfdata, on_disk_file

INDEX_FILE, IDS_FILE, INFO_FILE, TUNING_FILE = "index.faiss", "ids.parquet", "index.json", "tuning.parquet"
EXACT_STORE_FILE = "exact.npy"  # the refine step's vectors in index order, when index.json names an exact_store
# Memory-mapped reading: IO_FLAG_MMAP_IFC ("in-file codes") maps the vectors / codes of flat, HNSW,
# IVF (inverted lists) and refine indexes from the file; what a type cannot map (an HNSW graph's
# links, centroids) is read into memory as usual. (IO_FLAG_MMAP alone maps IVF lists too, but fails
# on IndexRefine and together with MMAP_IFC in FAISS 1.15.)
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
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


def read_faiss(path: Path, info: dict, mmap: bool = False) -> faiss.Index:
    """The FAISS index; ``mmap`` maps its vectors / lists from the file instead of reading them (opens
    in milliseconds, pages come in as searches touch them; the index cannot be added to)."""
    index_path = path / INDEX_FILE
    if not index_path.exists():
        raise CorruptArtifact(f"{path}: {INDEX_FILE} is missing")
    size, expected = index_path.stat().st_size, info.get("memory_bytes")
    if expected is not None and size != expected:
        raise CorruptArtifact(f"{index_path} has {size} bytes, {INFO_FILE} says {expected}: "
                             "truncated or replaced; rebuild it with `embedpipe index`")
    on_disk = on_disk_file(info) is not None
    if on_disk:   # its lists are mapped from index.ivfdata whatever ``mmap`` says
        check_ivfdata(path, info)
    # ONDISK_READ_FLAGS also when index.json names no on-disk lists: on-disk lists in index.faiss are
    # then only ever looked for in its own directory, read-only (never at the path the file records)
    flags = MMAP_FLAGS if mmap and not on_disk else ONDISK_READ_FLAGS
    try:
        with c_stdout_aside(drop=True):   # FAISS says where it found index.ivfdata
            index = faiss.read_index(str(index_path), flags)
    except RuntimeError:
        raise CorruptArtifact(f"{index_path} cannot be read by FAISS (truncated or corrupt); "
                             "rebuild it with `embedpipe index`") from None
    if index.d != int(info["dim"]):
        raise CorruptArtifact(f"{index_path} holds vectors of dimension {index.d}, {INFO_FILE} says {info['dim']}")
    if index.ntotal != int(info["n"]):
        raise CorruptArtifact(f"{index_path} holds {index.ntotal} vectors, {INFO_FILE} says {info['n']}")
    return index


def open_ids(path: Path, info: dict) -> IndexIds:
    """The ids of the index's rows: memory-mapped from ids.arrow when index.json names it (only
    ids.parquet's footer is read, to check it agrees), else read whole from ids.parquet (an index
    written before ids.arrow)."""
    n = int(info["n"])
    if not info.get("ids_file"):
        return IndexIds.in_memory(read_ids(path, n))
    if info["ids_file"] != IDS_ARROW_FILE:
        raise CorruptArtifact(f"{INFO_FILE} names the ids file {info['ids_file']!r}; expected {IDS_ARROW_FILE!r}")
    ids_path = path / IDS_FILE
    try:
        parquet = pq.ParquetFile(ids_path)
        rows, schema = parquet.metadata.num_rows, parquet.schema_arrow
    except (OSError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read {ids_path}: {e}") from None
    if "id" not in schema.names or rows != n:
        raise CorruptArtifact(f"{ids_path} must hold one 'id' per indexed vector ({n}); "
                             f"it has columns {schema.names} and {rows} rows")
    return open_ids_file(path / IDS_ARROW_FILE, n, schema.field("id").type)


def read_ids(path: Path, n: int) -> pa.Array:
    """Every id of ids.parquet, in RAM."""
    ids_path = path / IDS_FILE
    try:
        table = pq.read_table(ids_path)
    except (OSError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read {ids_path}: {e}") from None
    if "id" not in table.column_names or table.num_rows != n:
        raise CorruptArtifact(f"{ids_path} must hold one 'id' per indexed vector ({n}); "
                             f"it has columns {table.column_names} and {table.num_rows} rows")
    return table.column("id").combine_chunks()


def read_tuning(path: Path) -> tuple[np.ndarray, list | None] | None:
    """(query vectors, their corpus ids or None for sample queries) from tuning.parquet, or None."""
    tuning_path = path / TUNING_FILE
    if not tuning_path.exists():
        return None
    try:
        table = pq.read_table(tuning_path)
        vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
        ids = table.column("id").to_pylist()
    except (OSError, KeyError, pa.ArrowException) as e:
        raise CorruptArtifact(f"cannot read {tuning_path}: {e}") from None
    dim = len(vectors) // max(table.num_rows, 1)
    return vectors.reshape(table.num_rows, dim), (None if all(i is None for i in ids) else ids)


def write_index_dir(out: Path, index: faiss.Index, ids: pa.Array, describe: Callable[[int], dict],
                    tuning: tuple[np.ndarray, list | None] | None = None, files: dict[str, Path] | None = None,
                    spans: pa.Table | None = None) -> dict:
    """index.faiss, ids.parquet, tuning.parquet (``tuning``: query vectors and their corpus ids or
    None), spans.arrow (``spans``: an index over chunks), ``files`` (name -> a finished file on the
    same filesystem, moved in: an exact store) and index.json (``describe(index_bytes)``), built in a
    staging directory that then replaces ``out`` in one rename; returns what index.json holds."""
    with staged_dir(out) as staging:
        for name, source in (files or {}).items():
            os.replace(source, staging / name)
        faiss.write_index(index, str(staging / INDEX_FILE))
        pq.write_table(pa.table({"id": ids}), staging / IDS_FILE)
        write_ids_file(staging / IDS_ARROW_FILE, ids)
        if tuning is not None:
            vectors, query_ids = tuning
            id_column = pa.array(query_ids, ids.type) if query_ids is not None else pa.nulls(len(vectors), ids.type)
            flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
            pq.write_table(pa.table({"id": id_column,
                                     "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                           staging / TUNING_FILE)
        info = {**describe((staging / INDEX_FILE).stat().st_size), "ids_file": IDS_ARROW_FILE}
        info.pop(SPANS_KEY, None)       # an append's describe starts from the index.json it replaces
        if spans is not None:
            write_spans_file(staging / SPANS_FILE, spans)
            info[SPANS_KEY] = SPANS_FILE
        write_json_atomic(staging / INFO_FILE, info)
    return info


INDEX_FILES = (INDEX_FILE, IDS_FILE, INFO_FILE)


def extra_files(info: dict) -> list[str]:
    """The files index.json names beside the three: an exact store and its scale file (the refine
    step's, or the one a compact index rescores from), then on-disk inverted lists."""
    stores = [info.get("exact_store") or {}, (info.get("compact") or {}).get("exact_store") or {}]
    names = [name for store in stores for name in (store.get("file"), store.get("scale_file")) if name]
    lists = on_disk_file(info)
    for name in [*names, *([lists] if lists is not None else [])]:  # from a file, maybe from elsewhere:
        if not isinstance(name, str) or Path(name).name != name or name.startswith(".") or name in INDEX_FILES:
            raise CorruptArtifact(f"{INFO_FILE} names the file {name!r}; expected a plain file name")   # no path out
    return names + ([lists] if lists is not None else [])


def ids_files(info: dict) -> list[str]:
    """ids.arrow and spans.arrow when index.json names them (never the names as written there: they
    come from a file)."""
    return [IDS_ARROW_FILE] * bool(info.get("ids_file")) + [SPANS_FILE] * bool(info.get(SPANS_KEY))


def upload_index_dir(local: Path, url: str) -> None:
    """Copy a finished index directory to a URL (s3://...), index.json last: on an object store,
    with no rename, index.json is what makes the others the index (``open_index`` reads it first)."""
    from ..storage.store import Store

    store = Store.at(url)
    store.delete([INFO_FILE])        # an earlier index stops being one before its files are replaced
    tuning = (TUNING_FILE,) if (local / TUNING_FILE).exists() else ()   # what append re-measures recall on
    info = json.loads((local / INFO_FILE).read_text())
    for name in (*tuning, *extra_files(info), *ids_files(info), *INDEX_FILES):
        with store.open_output(name) as out, open(local / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                out.write(block)


def download_index_dir(url: str, local: Path) -> Path:
    """The index directory at ``url`` copied into ``local`` (index.json first: no index.json, no index)."""
    from ..storage.store import Store

    store = Store.at(url)
    if not store.exists(INFO_FILE):
        raise BadInput(f"index directory {url} does not exist (no {INFO_FILE})")
    names = [INFO_FILE]
    for name in names:
        if not store.copy_to(name, local / name):   # streamed: on-disk lists may exceed RAM
            raise CorruptArtifact(f"{url}: {name} is missing; rebuild the index")
        if name == INFO_FILE:
            info = read_info(local)
            names += [INDEX_FILE, IDS_FILE, *extra_files(info), *ids_files(info)]
    tuning = store.read_bytes(TUNING_FILE)   # optional: an index built before it was uploaded has none
    if tuning is not None:
        (local / TUNING_FILE).write_bytes(tuning)
    return local
