"""The vector directory contract: parquet shards of (id, vector) plus a manifest written last.

    out/part-00000.parquet   id, vector: fixed_size_list<float32|float16>[dim]
    out/part-00001.parquet   ...
    out/manifest.json        model, pooling, dim, rows, per-shard rows and sha256, source ...

Writing happens in a hidden staging directory beside ``out``; it replaces ``out`` in one rename
only once every shard and the manifest are complete, so a crash or a bad row never leaves a
half-written result, nor destroys an earlier one.

    >>> with VectorWriter("out", dim=384) as writer:
    ...     writer.write(ids, vectors)
    ...     writer.publish({"pooling": "mean", ...})
    >>> vs = open_vectors("out"); vs.dim, vs.rows
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import EmbedpipeError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TRUNCATED_KEY = "embedpipe.truncated_rows"  # shard footer: rows cut to max_length


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vector_array(vectors: np.ndarray, dtype: str = "float32") -> pa.FixedSizeListArray:
    """(N, D) numpy -> arrow ``fixed_size_list<dtype>[D]`` without a Python loop."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=dtype).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def vectors_from_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow ``fixed_size_list`` column -> (N, D) float32 numpy."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``path`` under a temporary name, flush it to disk, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        rename_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rename_into_place(src: Path, dst: Path) -> None:
    """The one step that makes a finished file visible (a test injects faults here)."""
    os.replace(src, dst)


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def shard_number(name: str) -> int | None:
    """``part-00012.parquet`` -> 12; anything else -> None."""
    if name.startswith("part-") and name.endswith(".parquet") and name[5:-8].isdigit():
        return int(name[5:-8])
    return None


def write_shard(table: pa.Table, directory: Path, name: str, truncated_rows: int = 0) -> dict:
    """Write one (id, vector) shard: temporary name, fsync, rename. Returns its manifest entry."""
    tmp = directory / f".{name}.tmp"
    try:
        metadata = {TRUNCATED_KEY: str(truncated_rows)}
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        rename_into_place(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    return shard_entry(directory / name)


def shard_entry(path: Path) -> dict:
    """A finished shard's manifest entry: file, rows, sha256, truncated_rows (from its own footer)."""
    metadata = pq.read_metadata(path)
    truncated = int((metadata.metadata or {}).get(TRUNCATED_KEY.encode(), b"0"))
    return {"file": path.name, "rows": metadata.num_rows, "sha256": file_sha256(path), "truncated_rows": truncated}


def publish_dir(staging: Path, out: Path) -> None:
    """Move a complete ``staging`` directory to ``out``, replacing an old ``out`` only at the end."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        try:
            rename_into_place(staging, out)
        except BaseException:
            os.replace(old, out)  # put the earlier result back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        rename_into_place(staging, out)


def check_output_dir(out: str | os.PathLike, overwrite: bool, marker: str) -> Path:
    """Refuse to replace an existing result unless asked; refuse a path that is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EmbedpipeError(f"output {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a result" if (out / marker).exists() else "files"
        raise EmbedpipeError(f"output {out} already holds {what}; pass --overwrite to replace it")
    return out


class ShardWriter:
    """Streams (id, vector) batches into shards of ``rows_per_shard`` rows in ``directory``,
    numbered from ``first_shard``; each shard appears (atomically) as soon as it is full.

    ``shards`` lists the finished shards' manifest entries. Rows not yet in a full shard are
    written by ``flush()``; a crash loses only those.
    """

    def __init__(self, directory: Path, dim: int, *, dtype: str = "float32", rows_per_shard: int = 100_000,
                 first_shard: int = 0):
        if dtype not in ("float32", "float16"):
            raise EmbedpipeError(f"unknown vector dtype {dtype!r}; choose float32 or float16")
        self.directory, self.dim, self.dtype, self.rows_per_shard = Path(directory), dim, dtype, rows_per_shard
        self.next_shard = first_shard
        self.shards: list[dict] = []
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_truncated: list[np.ndarray] = []
        self._pending_rows = 0

    def write(self, ids: pa.Array | list, vectors: np.ndarray, truncated: np.ndarray | None = None) -> None:
        """Queue rows; ``truncated`` (bool per row) marks texts cut to the model's max_length."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise EmbedpipeError(f"vectors have shape {vectors.shape}, expected (n, {self.dim})")
        ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids)
        if len(ids) != len(vectors):
            raise EmbedpipeError(f"{len(ids)} ids for {len(vectors)} vectors")
        table = pa.table({"id": ids, "vector": vector_array(vectors, self.dtype)})
        self._pending.append(table)
        self._pending_truncated.append(np.zeros(len(ids), bool) if truncated is None else np.asarray(truncated, bool))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rows_per_shard:
            self._write_shard(self.rows_per_shard)

    def flush(self) -> None:
        if self._pending_rows:
            self._write_shard(self._pending_rows)

    def _write_shard(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        truncated = np.concatenate(self._pending_truncated)
        shard, rest = table.slice(0, rows), table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_truncated = [truncated[rows:]] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        entry = write_shard(shard, self.directory, shard_name(self.next_shard), int(truncated[:rows].sum()))
        self.next_shard += 1
        self.shards.append(entry)
        self.rows += shard.num_rows


def complete_manifest(manifest: dict, dim: int, dtype: str, shards: list[dict]) -> dict:
    """The manifest's fixed part around what the caller records."""
    return {"format_version": FORMAT_VERSION, **manifest, "dim": dim, "dtype": dtype,
            "rows": sum(s["rows"] for s in shards), "shards": shards}


class VectorWriter:
    """Streams (id, vector) batches into a hidden staging directory; ``publish`` makes it ``out``."""

    def __init__(self, out: str | os.PathLike, dim: int, *, dtype: str = "float32",
                 rows_per_shard: int = 100_000, overwrite: bool = False):
        if dtype not in ("float32", "float16"):
            raise EmbedpipeError(f"unknown vector dtype {dtype!r}; choose float32 or float16")
        self.out = check_output_dir(out, overwrite, MANIFEST)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.out.with_name(f".{self.out.name}.staging-{uuid.uuid4().hex[:8]}")
        self.staging.mkdir()
        self.dim, self.dtype = dim, dtype
        self.shards_writer = ShardWriter(self.staging, dim, dtype=dtype, rows_per_shard=rows_per_shard)
        self._published = False

    @property
    def shards(self) -> list[dict]:
        return self.shards_writer.shards

    @property
    def rows(self) -> int:
        return self.shards_writer.rows

    def write(self, ids: pa.Array | list, vectors: np.ndarray, truncated: np.ndarray | None = None) -> None:
        self.shards_writer.write(ids, vectors, truncated)

    def publish(self, manifest: dict) -> dict:
        """Write the last shard and the manifest, then make the directory visible at ``out``."""
        self.shards_writer.flush()
        full = complete_manifest(manifest, self.dim, self.dtype, self.shards)
        write_json_atomic(self.staging / MANIFEST, full)
        publish_dir(self.staging, self.out)
        self._published = True
        return full

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "VectorWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._published:
            self.abort()


@dataclass
class VectorSet:
    """A complete vector directory, checked against its manifest; read it batch by batch."""

    path: Path
    manifest: dict

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    def iter_batches(self, batch_rows: int = 65_536) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """Yield (ids, float32 vectors (n, dim)) in row order, reading one parquet batch at a time."""
        for shard in self.manifest["shards"]:
            path = self.path / shard["file"]
            try:
                pf = pq.ParquetFile(path)
            except (OSError, pa.ArrowException) as e:
                raise EmbedpipeError(f"cannot read vector shard {path}: {e}") from None
            width = _vector_width(pf.schema_arrow, path)
            if width != self.dim:
                raise EmbedpipeError(f"vector shard {path} has dimension {width}, the manifest says {self.dim}")
            for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "vector"]):
                yield batch.column(0), vectors_from_column(batch.column(1))

    def read_all(self) -> tuple[pa.Array, np.ndarray]:
        """All ids and vectors in memory (for small sets and tests)."""
        out = np.empty((self.rows, self.dim), dtype=np.float32)
        ids, start = [], 0
        for batch_ids, vecs in self.iter_batches():
            out[start:start + len(vecs)] = vecs
            ids.append(batch_ids)
            start += len(vecs)
        if start != self.rows:
            raise EmbedpipeError(f"{self.path} holds {start} vectors, the manifest says {self.rows}")
        return (pa.concat_arrays(ids) if ids else pa.array([])), out


def _vector_width(schema: pa.Schema, path: Path) -> int:
    if "id" not in schema.names or "vector" not in schema.names:
        raise EmbedpipeError(f"vector shard {path} lacks the columns 'id' and 'vector'")
    vtype = schema.field("vector").type
    if not pa.types.is_fixed_size_list(vtype):
        raise EmbedpipeError(f"vector shard {path}: column 'vector' is {vtype}, not a fixed-size list")
    return vtype.list_size


def open_vectors(path: str | os.PathLike, *, verify: bool = False) -> VectorSet:
    """Open an embedpipe vector directory; errors name what is missing or inconsistent.

    ``verify=True`` also checks every shard's sha256 against the manifest.
    """
    path = Path(path)
    if not path.is_dir():
        raise EmbedpipeError(f"vector directory {path} does not exist")
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise EmbedpipeError(f"{path} is not a complete embedpipe vector directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
        shards, dim = manifest["shards"], int(manifest["dim"])
    except (ValueError, KeyError, TypeError) as e:
        raise EmbedpipeError(f"{manifest_path} is not a valid embedpipe manifest ({e})") from None
    for shard in shards:
        shard_path = path / shard["file"]
        if not shard_path.exists():
            raise EmbedpipeError(f"{path}: shard {shard['file']} named in the manifest is missing")
        if verify and file_sha256(shard_path) != shard["sha256"]:
            raise EmbedpipeError(f"{path}: shard {shard['file']} does not match its checksum in the manifest "
                                 "(changed or corrupt since it was written); re-encode with --overwrite")
    if dim <= 0:
        raise EmbedpipeError(f"{manifest_path}: dimension {dim} is not positive")
    return VectorSet(path, manifest)
