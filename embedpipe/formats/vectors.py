"""The vector directory contract: parquet shards of (id, vector) plus a manifest written last.

    out/part-00000.parquet   id, vector: fixed_size_list<float32|float16|int8|uint8>[dim] (binary: [dim / 8])
    out/part-00001.parquet   ...
    out/manifest.json        model, pooling, dim, rows, per-shard rows and sha256, source ...

Writing happens in a hidden staging directory beside ``out``; it replaces ``out`` in one rename
only once every shard and the manifest are complete, so a crash or a bad row never leaves a
half-written result, nor destroys an earlier one.

    >>> with VectorWriter("out", dim=384) as writer:  # doctest: +SKIP
    ...     writer.write(ids, vectors)
    ...     writer.publish({"pooling": "mean", ...})
    >>> vs = open_vectors("out"); vs.dim, vs.rows  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import checks, fsio
from ..errors import BadInput, CorruptArtifact, EmbedpipeError
from ..fsio import check_output_dir, file_sha256, hidden_sibling, publish_dir, write_json_atomic
from ..storage.store import Store
from .codes import COMPACT, NUMPY_DTYPE, code_width, dequantize, ranges_from_record

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16", *COMPACT)  # how vectors may be stored (compact codes: codes.py)
TRUNCATED_KEY = "embedpipe.truncated_rows"  # shard footer: rows cut to max_length


def vector_array(vectors: np.ndarray, dtype: str = "float32") -> pa.FixedSizeListArray:
    """(N, D) numpy -> arrow ``fixed_size_list<dtype>[D]`` without a Python loop (codes as they are).
    Values beyond a narrower dtype's range are refused: float16 would store them as inf."""
    with np.errstate(over="ignore"):   # an overflow is refused below, in words
        stored = np.ascontiguousarray(vectors, dtype=NUMPY_DTYPE[dtype])
    if stored.dtype != vectors.dtype and np.isfinite(vectors).all():
        check_finite(stored, f"as {dtype}, vectors", hint="store them as float32 (dtype=float32) or normalize them",
                     fields=("dtype",))
    return pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1)), vectors.shape[1])


def check_finite(vectors: np.ndarray, what: str, *, ids=None, hint: str = "", fields: tuple[str, ...] = (),
                 error: type[EmbedpipeError] = BadInput) -> np.ndarray:
    """``vectors`` unchanged when every value is finite; otherwise ``error`` naming how many rows hold
    NaN or inf and, when ``ids`` are given, the first of them. Checked where vectors
    are made (the encoder) and where they are read (a shard), so none reaches an index or a search.

    >>> check_finite(np.array([[1.0, 0.0], [np.nan, 1.0]]), "vectors", ids=["a", "b"])
    Traceback (most recent call last):
    embedpipe.errors.BadInput: vectors: 1 of 2 vector(s) hold NaN or inf (first id: 'b')
    """
    bad = ~np.isfinite(vectors).all(axis=-1) if vectors.size else np.zeros(len(vectors), bool)
    if bad.any():
        first = ""
        if ids is not None:
            value = ids[int(np.flatnonzero(bad)[0])]
            first = f" (first id: {(value.as_py() if hasattr(value, 'as_py') else value)!r})"
        raise error(f"{what}: {int(bad.sum())} of {len(vectors)} vector(s) hold NaN or inf{first}"
                    + (f"; {hint}" if hint else ""), fields=fields)
    return vectors


def vectors_from_column(column: pa.Array | pa.ChunkedArray, *, keep_dtype: bool = False) -> np.ndarray:
    """Arrow ``fixed_size_list`` column -> (N, D) float32 numpy (``keep_dtype``: as stored)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return flat if keep_dtype else flat.astype(np.float32, copy=False)


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def shard_number(name: str) -> int | None:
    """``part-00012.parquet`` or ``part-00012-ATTEMPT.parquet`` -> 12; anything else -> None."""
    if name.startswith("part-") and name.endswith(".parquet"):
        number = name[5:-8].split("-", 1)[0]
        return int(number) if number.isdigit() else None
    return None


def write_shard(table: pa.Table, directory: Path, name: str, truncated_rows: int = 0) -> dict:
    """Write one (id, vector) shard: temporary name, fsync, rename. Returns its manifest entry."""
    with fsio.atomic_path(directory / name) as tmp:
        pq.write_table(table.replace_schema_metadata({TRUNCATED_KEY: str(truncated_rows)}), tmp)
    return shard_entry(directory / name)


def shard_entry(path: Path) -> dict:
    """A finished shard's manifest entry: file, rows, sha256, truncated_rows (from its own footer)."""
    metadata = pq.read_metadata(path)
    truncated = int((metadata.metadata or {}).get(TRUNCATED_KEY.encode(), b"0"))
    return {"file": path.name, "rows": metadata.num_rows, "sha256": file_sha256(path), "truncated_rows": truncated}


class ShardWriter:
    """Streams (id, vector) batches into shards of ``rows_per_shard`` rows in ``directory``,
    numbered from ``first_shard``; each shard appears (atomically) as soon as it is full.

    ``shards`` lists the finished shards' manifest entries. Rows not yet in a full shard are
    written by ``flush()``; a crash loses only those.
    """

    def __init__(self, directory: Path, dim: int, *, dtype: str = "float32", rows_per_shard: int = 100_000,
                 first_shard: int = 0):
        checks.one_of("dtype", dtype, DTYPES)
        self.directory, self.dim, self.dtype, self.rows_per_shard = Path(directory), dim, dtype, rows_per_shard
        self.next_shard = first_shard
        self.shards: list[dict] = []
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_truncated: list[np.ndarray] = []
        self._pending_rows = 0

    def write(self, ids: pa.Array | list, vectors: np.ndarray, truncated: np.ndarray | None = None) -> None:
        """Queue rows; ``truncated`` (bool per row) marks texts cut to the model's max_length."""
        width = code_width(self.dim, self.dtype)   # compact dtypes take codes: dim / 8 bytes for bits
        if vectors.ndim != 2 or vectors.shape[1] != width:
            raise EmbedpipeError(f"vectors have shape {vectors.shape}, expected (n, {width})")
        ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids)
        if len(ids) != len(vectors):
            raise EmbedpipeError(f"{len(ids)} ids for {len(vectors)} vectors")
        check_finite(vectors, f"vectors written to {self.directory}", ids=ids)
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
        checks.one_of("dtype", dtype, DTYPES)
        self.out = check_output_dir(out, overwrite, MANIFEST)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = hidden_sibling(self.out, "staging")
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

    def __enter__(self) -> VectorWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._published:
            self.abort()


@dataclass
class VectorSet:
    """A complete vector directory (a local path or a URL), checked against its manifest; read it
    batch by batch."""

    store: Store
    manifest: dict
    column: str = "vector"    # or "rescore": the rescoring vectors kept beside binary codes

    @property
    def path(self) -> Path | str:
        """The local directory, or the URL for one on an object store."""
        return self.store.local if self.store.local is not None else self.store.location

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    def manifest_sha256(self) -> str:
        return self.store.sha256(MANIFEST)

    @property
    def dtype(self) -> str:
        if self.column == "rescore":
            return str(self.compact["rescore_dtype"])
        return str(self.manifest.get("dtype") or "float32")

    def rescore_vectors(self) -> VectorSet | None:
        """The rescoring vectors an encode kept beside binary codes (the shards' ``rescore`` column), or None."""
        return VectorSet(self.store, self.manifest, "rescore") if self.compact.get("rescore_dtype") else None

    @property
    def compact(self) -> dict:
        """What the manifest records of compact codes (precision, calibration ranges, truncate_dim); {} for floats."""
        return self.manifest.get("compact") or {}

    def iter_batches(self, batch_rows: int = 65_536, *, codes: bool = False) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """Yield (ids, float32 vectors (n, dim)) in row order, reading one parquet batch at a time;
        compact codes are read back as floats (codes.dequantize), or as stored with ``codes``."""
        dtype, width = self.dtype, code_width(self.dim, self.dtype)
        ranges = ranges_from_record(self.compact.get("ranges")) if dtype in COMPACT else None
        for shard in self.manifest["shards"]:
            where = self.store.describe(shard["file"])
            try:
                with self.store.filesystem.open_input_file(self.store.path(shard["file"])) as f:
                    pf = pq.ParquetFile(f)
                    stored = _vector_width(pf.schema_arrow, where, self.column)
                    if stored != width:
                        raise CorruptArtifact(f"vector shard {where} has dimension {stored}, the manifest says "
                                              f"{width}" + (f" ({dtype} codes of dimension {self.dim})"
                                                            if dtype in COMPACT else ""))
                    for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", self.column]):
                        ids, column = batch.column(0), batch.column(1)
                        if dtype not in COMPACT:   # codes are finite by their type
                            yield ids, check_finite(
                                vectors_from_column(column, keep_dtype=codes), f"vector shard {where}", ids=ids,
                                hint="re-encode it with overwrite=true", fields=("overwrite",), error=CorruptArtifact)
                        elif codes:
                            yield ids, vectors_from_column(column, keep_dtype=True)
                        else:
                            yield ids, dequantize(vectors_from_column(column, keep_dtype=True), dtype, self.dim, ranges)
            except (OSError, pa.ArrowException) as e:
                raise CorruptArtifact(f"cannot read vector shard {where}: {e}") from None

    def read_all(self) -> tuple[pa.Array, np.ndarray]:
        """All ids and vectors in memory (for small sets and tests)."""
        out = np.empty((self.rows, self.dim), dtype=np.float32)
        ids, start = [], 0
        for batch_ids, vecs in self.iter_batches():
            out[start:start + len(vecs)] = vecs
            ids.append(batch_ids)
            start += len(vecs)
        if start != self.rows:
            raise CorruptArtifact(f"{self.path} holds {start} vectors, the manifest says {self.rows}")
        return (pa.concat_arrays(ids) if ids else pa.array([])), out


def _vector_width(schema: pa.Schema, path, column: str = "vector") -> int:
    if "id" not in schema.names or column not in schema.names:
        raise CorruptArtifact(f"vector shard {path} lacks the columns 'id' and '{column}'")
    vtype = schema.field(column).type
    if not pa.types.is_fixed_size_list(vtype):
        raise CorruptArtifact(f"vector shard {path}: column '{column}' is {vtype}, not a fixed-size list")
    return vtype.list_size


def read_manifest(path: Path | Store) -> dict:
    """The manifest of the vector directory ``path``, checked for the keys every reader needs."""
    store = path if isinstance(path, Store) else Store.at(path)
    manifest_path = store.describe(MANIFEST)
    if not store.exists(MANIFEST):
        raise BadInput(f"{store.location} is not a complete embedpipe vector directory (no {MANIFEST})")
    manifest = store.read_json(MANIFEST)
    try:
        if manifest is None:
            raise ValueError("not a JSON object")
        [s["file"] for s in manifest["shards"]], int(manifest["dim"]), int(manifest["rows"])
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptArtifact(f"{manifest_path} is not a valid embedpipe manifest ({e}); "
                              "rebuild it with overwrite=true", fields=("overwrite",)) from None
    return manifest


def published_manifest(out: Path | Store) -> dict | None:
    """The manifest of a complete output at ``out``; None if there is none yet. A local directory
    with files but no manifest is refused (it is not ours to replace without ``overwrite``); on an
    object store, embedpipe's files without a manifest are an unfinished run's (the manifest is the
    commit), and other objects are refused the same way."""
    store = out if isinstance(out, Store) else Store.at(out)
    if store.local is not None:
        local = store.local
        if not local.exists() or not any(local.iterdir()):
            return None
        if not (local / MANIFEST).exists():
            raise BadInput(f"output {local} already holds files; pass overwrite=true to replace them",
                           fields=("overwrite",))
    elif not store.exists(MANIFEST):
        # As a local directory of other files is refused: objects embedpipe did not write are not ours
        # to write beside (a prefix named by mistake: someone's data, another tool's output).
        foreign = [n for n in store.names() if not (n in (MANIFEST, "run.json") or (
            n.startswith("part-") and n.endswith((".parquet", ".json"))))]
        if foreign:
            raise BadInput(f"output {store.location} already holds objects embedpipe did not write (e.g. "
                           f"{foreign[0]!r}); choose a prefix of its own, or pass overwrite=true to write beside "
                           "them (nothing embedpipe did not write is deleted)", fields=("overwrite",))
        return None
    manifest = read_manifest(store)
    if not isinstance(manifest.get("source"), dict):
        raise CorruptArtifact(f"{store.describe(MANIFEST)} is not a valid embedpipe manifest (no source); "
                              "rebuild it with overwrite=true", fields=("overwrite",))
    return manifest


def verify_shard(directory: Path | Store, shard: dict, *, checksum: bool) -> str:
    """The path (inside its store) of a shard the manifest lists; an error when it is missing or
    (``checksum``) changed."""
    store = directory if isinstance(directory, Store) else Store.at(directory)
    if not store.exists(shard["file"]):
        raise CorruptArtifact(f"{store.location}: shard {shard['file']} named in the manifest is missing; "
                              "re-encode with overwrite=true", fields=("overwrite",))
    if checksum and store.sha256(shard["file"]) != shard["sha256"]:
        raise CorruptArtifact(f"{store.location}: shard {shard['file']} does not match its checksum in the manifest "
                              "(changed or corrupt since it was written); re-encode with overwrite=true",
                              fields=("overwrite",))
    return store.path(shard["file"])


def read_ids(directory: Path | Store, shards: list[dict], verify: bool, column: str = "id") -> list[pa.Array]:
    """The id column (or ``column``: "doc_id" of chunk rows) of each shard, only that column read;
    ``verify`` checks sha256 first."""
    store = directory if isinstance(directory, Store) else Store.at(directory)
    ids = []
    for shard in shards:
        path = verify_shard(store, shard, checksum=verify)
        try:
            with store.filesystem.open_input_file(path) as f:
                ids.append(pq.read_table(f, columns=[column]).column(column).combine_chunks())
        except (pa.ArrowException, OSError) as e:
            raise CorruptArtifact(f"cannot read shard {store.describe(shard['file'])}: {e}") from None
    return ids


def encoder_identity(encoder: dict | None, model_hash: str | None) -> dict:
    """What decides the vector a text gets: the encoder record (model, pooling, normalize,
    max_length, optimize, quantize) and the model's content hash. Manifests, the index, the
    feature cache and the pipeline all compare this one dict."""
    return {**(encoder or {}), "model_content_hash": model_hash}


def identity_of(manifest: dict) -> dict:
    """``encoder_identity`` as a manifest records it."""
    return encoder_identity(manifest.get("encoder"), (manifest.get("model") or {}).get("content_hash"))


def run_key(identity: dict, dtype: str, text_column: str, id_column: str, title_column: str | None = None) -> dict:
    """What two encode runs must share to write the same output: the identity, how vectors are
    stored, and which columns they came from (a title column only when there is one, so manifests
    written before titles existed keep their key)."""
    key = {**identity, "dtype": dtype, "text_column": text_column, "id_column": id_column}
    return {**key, "title_column": title_column} if title_column else key


def run_key_of(manifest: dict) -> dict:
    source = manifest.get("source") or {}
    return run_key(identity_of(manifest), manifest.get("dtype"), source.get("text_column"), source.get("id_column"),
                   source.get("title_column"))


def differences(old: dict, new: dict) -> str:
    """'pooling mean -> cls, dtype float32 -> float16' (empty when the configs match)."""
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!s:.16} -> {new.get(k)!s:.16}" for k in keys if old.get(k) != new.get(k))


def open_vectors(path: str | os.PathLike, *, verify: bool = False) -> VectorSet:
    """Open an embedpipe vector directory, a local path or a URL (s3://...); errors name what is
    missing or inconsistent.

    ``verify=True`` also checks every shard's sha256 against the manifest.
    """
    store = Store.at(path)
    if store.local is not None and not store.local.is_dir():
        raise BadInput(f"vector directory {path} does not exist")
    manifest = read_manifest(store)
    for shard in manifest["shards"]:
        verify_shard(store, shard, checksum=verify)
    if int(manifest["dim"]) <= 0:
        raise CorruptArtifact(f"{store.describe(MANIFEST)}: dimension {manifest['dim']} is not positive")
    return VectorSet(store, manifest)
