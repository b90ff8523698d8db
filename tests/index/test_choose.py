"""choose.py: the memory ladder, candidate routes, IVF cells and training sample sizes, sizes."""

from __future__ import annotations

import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.index.choose import choose_factory, ivf_centroids, parse_size, training_rows


@pytest.mark.parametrize("n, dim, memory, expected", [
    (5_000, 384, "4GB", "Flat"),                                   # small: exact search
    (88_000, 384, "4GB", "HNSW32"),                                # HNSW fits with room to spare
    (1_000_000, 384, "1.6GB", "HNSW8"),                            # HNSW with fewer links to fit
    (1_000_000, 384, "1.56GB", "IVF4096,Flat"),                    # no HNSW, full vectors fit
    (1_000_000, 384, "1GB", "OPQ256_512,IVF4096_HNSW32,PQ256x8np"),  # compressed codes
    (1_000_000, 384, "100MB", "OPQ64_448,IVF4096_HNSW32,PQ64x8np"),  # smaller codes for less memory
])
def test_auto_choice_follows_the_memory_ladder(n, dim, memory, expected):
    assert choose_factory(n, dim, parse_size(memory)) == expected


def test_auto_choice_refuses_an_impossible_budget():
    with pytest.raises(EmbedpipeError, match="raise max_memory"):
        choose_factory(1_000_000, 384, parse_size("1MB"))


def test_ivf_centroids_and_training_sample_follow_faiss_guidance():
    assert ivf_centroids(1_000_000) == 4096
    assert 0.9 * 12_000 >= 39 * ivf_centroids(12_000)          # >= 39 training points per centroid
    assert training_rows(10_000_000, 4096) == 50 * 4096         # 30k..256k, ~50 per centroid
    assert training_rows(10_000_000, 65_536) == 256_000         # capped
    assert training_rows(20_000, 128) == 20_000                 # small corpora train on everything


@pytest.mark.parametrize("text, expected", [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000),
                                            ("1000", 1000)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4 parsecs", "-1GB", "0MB", ""])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(EmbedpipeError, match="size"):
        parse_size(text)
