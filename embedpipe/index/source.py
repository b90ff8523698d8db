"""The vector directory an index is built from, as build and append read it: the id chunks joined
into the index's row -> id column, the row count checked against the manifest, and what index.json
records about where the vectors came from.

    >>> concat_ids([pa.array(["a", "b"]), pa.array(["c"])], vectors).to_pylist()   # doctest: +SKIP
    ['a', 'b', 'c']
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..errors import EmbedpipeError
from ..formats.vectors import VectorSet


def check_row_count(vectors: VectorSet, seen: int) -> None:
    """An error when a full pass over ``vectors`` read another number of rows than its manifest says."""
    if seen != vectors.rows:
        raise EmbedpipeError(f"{vectors.path} holds {seen} vectors, its manifest says {vectors.rows}")


def concat_ids(ids: list[pa.Array], vectors: VectorSet) -> pa.Array:
    """One id array from the chunks read from ``vectors``; an error when shards disagree on its type."""
    try:
        return pa.concat_arrays(ids)
    except pa.ArrowInvalid as e:
        raise EmbedpipeError(f"{vectors.path}: the id column has different types in different shards ({e})") from None


def source_record(vectors: VectorSet) -> dict:
    """What index.json says about the vectors it holds: path, manifest, and the manifest's sha256."""
    where = vectors.path.resolve() if isinstance(vectors.path, Path) else vectors.path
    return {"vectors": str(where), "manifest": vectors.manifest, "source_manifest_sha256": vectors.manifest_sha256()}
