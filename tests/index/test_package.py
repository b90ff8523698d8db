"""embedpipe.index's public names are the same objects from ``embedpipe`` (its lazy _API map names
the module each one lives in, so a move inside index/ must update it)."""

from __future__ import annotations

import embedpipe
import embedpipe.index


def test_the_index_api_is_the_same_from_embedpipe_and_embedpipe_index():
    assert sorted(embedpipe.index.__all__) == [
        "IndexConfig", "LoadedIndex", "append_index", "build_index", "open_index"]
    for name in embedpipe.index.__all__:
        assert getattr(embedpipe, name) is getattr(embedpipe.index, name), name
        assert name in embedpipe.__all__
