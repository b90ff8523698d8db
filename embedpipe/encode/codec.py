"""The last step before a vector is stored: keep the first ``truncate_dim`` dimensions (Matryoshka,
then normalize again when the vectors are normalized), then cast or quantize to the output's dtype.

    >>> codec = VectorCodec("ubinary", truncate_dim=8, normalize=True)
    >>> codec(np.array([[1.0, -1, 1, -1, 1, -1, 1, -1, 5, 5]], dtype=np.float32))
    array([[170]], dtype=uint8)

The same codec makes a corpus's codes in every worker and a query's vector at search (``truncate``
only: search quantizes queries as its index needs), built from what the manifest records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats.codes import QUANTIZED, quantize
from ..formats.vectors import vector_array
from .pooling import l2_normalize


def truncate(vectors: np.ndarray, dim: int | None, normalize: bool) -> np.ndarray:
    """The first ``dim`` dimensions (all for None), renormalized when ``normalize``."""
    if dim is None or dim >= vectors.shape[1]:
        return vectors
    kept = np.ascontiguousarray(vectors[:, :dim])
    return l2_normalize(kept) if normalize else kept


@dataclass(frozen=True, eq=False)
class VectorCodec:
    dtype: str                          # formats/vectors.DTYPES
    truncate_dim: int | None = None     # keep the first N dimensions; None = all
    normalize: bool = True              # renormalize after truncating (as the encoder normalized)
    ranges: np.ndarray | None = None    # int8/uint8: per-dimension (2, dim) [min; max] of the truncated vectors
    rescore_dtype: str | None = None    # bits only: also keep the vectors in this dtype, column "rescore"

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        kept = truncate(vectors, self.truncate_dim, self.normalize)
        return quantize(kept, self.dtype, self.ranges if self.dtype in QUANTIZED else None)

    def columns(self, vectors: np.ndarray) -> dict:
        """A shard's coded columns: ``vector``, and ``rescore`` (the rescoring vectors kept beside bits)."""
        out = {"vector": vector_array(self(vectors), self.dtype)}
        if self.rescore_dtype is not None:
            kept = truncate(vectors, self.truncate_dim, self.normalize)
            ranges = self.ranges if self.rescore_dtype in QUANTIZED else None
            out["rescore"] = vector_array(quantize(kept, self.rescore_dtype, ranges), self.rescore_dtype)
        return out

    @property
    def changes_vectors(self) -> bool:
        return self.truncate_dim is not None or self.dtype != "float32"


def manifest_truncate_dim(manifest: dict) -> int | None:
    """The truncate_dim a vector manifest (or index.json's copy) records; None: full width."""
    return (manifest.get("encoder") or {}).get("truncate_dim")


def query_vectors(manifest: dict, vectors: np.ndarray) -> np.ndarray:
    """Float query vectors -> what the corpus's vectors were before quantizing (truncated as recorded)."""
    return truncate(vectors, manifest_truncate_dim(manifest), bool(manifest.get("normalize", True)))
