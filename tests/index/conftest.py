"""Index fixtures: a clustered corpus of 12,000 vectors and the auto index over it, built once a session
(tests read them and write elsewhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedpipe.index import IndexConfig, build_index
from tests.index.clustered import clustered_unit_vectors, write_vectors


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """12,000 clustered unit vectors in three shards (the first 12,000 of the 12,300 made)."""
    x = clustered_unit_vectors(12_300)[:12_000]
    return write_vectors(tmp_path_factory.mktemp("vectors") / "corpus.vectors", x), x


@pytest.fixture(scope="session")
def auto_index(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("indexes") / "auto.index"
    return out, build_index(corpus[0], out, IndexConfig(factory="auto"))
