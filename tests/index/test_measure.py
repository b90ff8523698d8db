"""measure.py: `auto` measures each route that fits on a sample, at the sample's scale."""

from __future__ import annotations

from embedpipe.index.choose import candidate_factories, ivf_centroids, parse_size, pick_measured
from embedpipe.index.measure import measure_candidates
from tests.index.clustered import clustered_unit_vectors


def test_auto_measures_each_route_that_fits_and_picks_the_fastest_on_target(corpus):
    assert candidate_factories(1_000_000, 384, parse_size("1.56GB")) == ["IVF4096,Flat"]  # nothing else fits
    x = corpus[1][:4000]
    queries = clustered_unit_vectors(12_300)[12_000:12_050]
    rows = measure_candidates(["HNSW8", "IVF4096,Flat", "IVF4096,PQ12x4fs,RFlat"], x, queries, "ip", 0.9)
    cells = ivf_centroids(4000)  # each route is measured at the sample's scale
    assert [r["measured_as"] for r in rows] == ["HNSW8", f"IVF{cells},Flat", f"IVF{cells},PQ12x4fs,RFlat"]
    assert all(r["reached"] and r["recall_at_10"] >= 0.9 for r in rows)
    assert "k_factor_rf=8" in rows[2]["search_params"]       # the refine re-ranks 8k candidates exactly
    assert pick_measured(rows) == max(rows, key=lambda r: r["qps"])
    missed = [{**r, "reached": False} for r in rows]
    assert pick_measured(missed)["factory"] == max(rows, key=lambda r: r["recall_at_10"])["factory"]
