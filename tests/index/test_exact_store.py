"""The exact store: rows written in index order to a .npy that numpy maps, read back dequantized, and
candidates rescored exactly (against brute force in numpy and against FAISS's exact search)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpipe.errors import BadInput, CorruptArtifact, EmbedpipeError
from embedpipe.index.exact_store import append_exact_store, open_exact_store, scale_path, write_exact_store


def _vectors(n=600, dim=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _batches(x, size=128):
    return (x[i:i + size] for i in range(0, len(x), size))


def _brute(queries, candidates, vectors, k, metric):
    """Best-k of each query's candidates by a plain Python loop (ties: lower id first)."""
    scores, ids = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1)
    for q, row in enumerate(candidates):
        cands = sorted({int(c) for c in row if c >= 0})
        exact = [(float(vectors[c] @ queries[q]) if metric == "ip"
                  else -float(((vectors[c] - queries[q]) ** 2).sum()), c) for c in cands]
        best = sorted(exact, key=lambda pair: (-pair[0], pair[1]))[:k]
        for j, (score, c) in enumerate(best):
            scores[q, j], ids[q, j] = score, c
    return scores, ids


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_rows_come_back_in_index_order_and_numpy_maps_the_file(tmp_path, dtype):
    x = _vectors()
    record = write_exact_store(tmp_path / "exact.npy", _batches(x, 100), dtype)
    mapped = np.load(tmp_path / "exact.npy", mmap_mode="r")
    assert mapped.shape == (600, 16) and mapped.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mapped, x.astype(dtype))
    assert record == {"dtype": dtype, "rows": 600, "dim": 16, "bytes": (tmp_path / "exact.npy").stat().st_size,
                      "file": "exact.npy", "scale_file": None}
    store = open_exact_store(tmp_path / "exact.npy")
    assert (store.rows, store.dim, store.dtype, store.disk_bytes) == (600, 16, dtype, record["bytes"])
    ids = [5, 599, 0, 5]
    np.testing.assert_array_equal(store.vectors(ids), x[ids].astype(dtype).astype(np.float32))
    assert store.vectors(ids).dtype == np.float32
    assert record["bytes"] - 600 * 16 * np.dtype(dtype).itemsize == 128  # the header, nothing else


@pytest.mark.parametrize("dtype,low,high", [("uint8", 0, 255), ("int8", -128, 127)])
def test_integer_codes_dequantize_within_half_a_step(tmp_path, dtype, low, high):
    x = _vectors()
    lo, hi = x.min(axis=0), x.max(axis=0)
    scale = (hi - lo) / (high - low)
    offset = lo - low * scale
    record = write_exact_store(tmp_path / "codes.npy", _batches(x), dtype, offset=offset, scale=scale)
    assert record["scale_file"] == "codes.scale.npy"
    files = (tmp_path / "codes.npy", scale_path(tmp_path / "codes.npy"))
    assert record["bytes"] == sum(p.stat().st_size for p in files)
    store = open_exact_store(tmp_path / "codes.npy")
    assert store.dtype == dtype and store.disk_bytes == record["bytes"]
    error = np.abs(store.vectors(np.arange(600)) - x)
    assert (error <= scale / 2 + 1e-5).all()
    assert np.load(tmp_path / "codes.npy", mmap_mode="r").dtype == np.dtype(dtype)


def test_integer_batches_are_taken_as_codes_and_the_default_scale_is_one(tmp_path):
    codes = np.arange(-20, 20, dtype=np.int16).reshape(10, 4)
    write_exact_store(tmp_path / "c.npy", [codes], "int8")
    store = open_exact_store(tmp_path / "c.npy")
    np.testing.assert_array_equal(store.vectors(np.arange(10)), codes.astype(np.float32))
    with pytest.raises(BadInput, match="outside int8's range"):
        write_exact_store(tmp_path / "d.npy", [codes * 10], "int8")


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_rescore_matches_faiss_exact_search_over_all_rows(tmp_path, metric):
    x, queries = _vectors(), _vectors(20, seed=1)
    write_exact_store(tmp_path / "exact.npy", _batches(x), "float32")
    store = open_exact_store(tmp_path / "exact.npy")
    flat = faiss.IndexFlatIP(16) if metric == "ip" else faiss.IndexFlatL2(16)
    flat.add(x)
    distances, expected = flat.search(queries, 10)
    everything = np.tile(np.arange(600)[::-1], (20, 1))  # every row a candidate, in reverse order
    scores, ids = store.rescore(queries, everything, 10, metric)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, distances if metric == "ip" else -distances, rtol=1e-4, atol=1e-4)
    assert scores.dtype == np.float32 and ids.dtype == np.int64


def test_rescore_skips_none_counts_repeats_once_and_pads_short_lists(tmp_path):
    x, queries = _vectors(), _vectors(3, seed=2)
    write_exact_store(tmp_path / "exact.npy", _batches(x), "float16")
    store = open_exact_store(tmp_path / "exact.npy")
    candidates = np.array([[7, -1, 7, 3], [-1, -1, -1, -1], [10, 11, 12, 13]])
    scores, ids = store.rescore(queries, candidates, 5, "ip")
    vectors = x.astype(np.float16).astype(np.float32)
    expected_scores, expected_ids = _brute(queries, candidates, vectors, 5, "ip")
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert list(ids[0, 2:]) == [-1, -1, -1] and np.isneginf(scores[0, 2:]).all()
    assert (ids[1] == -1).all() and np.isneginf(scores[1]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), nq=st.integers(1, 6), c=st.integers(1, 12), k=st.integers(1, 15),
       metric=st.sampled_from(["ip", "l2"]), none_share=st.floats(0, 1))
def test_rescore_agrees_with_brute_force_on_any_candidate_lists(tmp_path_factory, seed, nq, c, k, metric,
                                                               none_share):
    path = tmp_path_factory.getbasetemp() / "hypothesis-exact.npy"
    x = _vectors(50, 8, seed=3)
    if not path.exists():
        write_exact_store(path, [x], "float32")
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((nq, 8)).astype(np.float32)
    candidates = rng.integers(0, 50, (nq, c))
    candidates[rng.random((nq, c)) < none_share] = -1
    scores, ids = open_exact_store(path).rescore(queries, candidates, k, metric)
    expected_scores, expected_ids = _brute(queries, candidates, x, k, metric)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)
    same_score = np.isclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert ((ids == expected_ids) | same_score).all()  # near-ties may order either way in float32


def test_rescore_works_through_many_queries_in_chunks(tmp_path, monkeypatch):
    import embedpipe.index.exact_store as exact_store
    monkeypatch.setattr(exact_store, "_RESCORE_CHUNK_BYTES", 1)  # one query per chunk
    x, queries = _vectors(), _vectors(7, seed=4)
    write_exact_store(tmp_path / "exact.npy", _batches(x), "float32")
    candidates = np.random.default_rng(5).integers(0, 600, (7, 30))
    scores, ids = open_exact_store(tmp_path / "exact.npy").rescore(queries, candidates, 4, "l2")
    expected_scores, expected_ids = _brute(queries, candidates, x, 4, "l2")
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4)


def test_a_failed_write_leaves_the_earlier_store_and_no_temporary_file(tmp_path):
    x = _vectors()
    write_exact_store(tmp_path / "exact.npy", _batches(x), "float32")
    before = (tmp_path / "exact.npy").read_bytes()

    def batches():
        yield x[:100]
        yield x[:100, :8]  # another dimension half way

    with pytest.raises(BadInput, match="dimension 8, earlier rows 16"):
        write_exact_store(tmp_path / "exact.npy", batches(), "float32")
    assert (tmp_path / "exact.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exact.npy"]


@pytest.mark.parametrize("batches,dtype,kwargs,message", [
    ([np.zeros((2, 4))], "float64", {}, "dtype 'float64' is not one of"),
    ([], "float32", {}, "at least one batch"),
    ([np.zeros(4)], "float32", {}, r"\(rows, dim\) arrays"),
    ([np.zeros((2, 0))], "float32", {}, "at least one dimension"),
    ([np.array([[1.0, np.nan]])], "float32", {}, "NaN or infinite"),
    ([np.array([[1e6, 0.0]])], "float16", {}, "beyond float16's range"),
    ([np.array([["a", "b"]])], "float32", {}, "not numbers"),
    ([np.zeros((2, 4))], "float32", {"scale": np.ones(4)}, "apply to int8 and uint8"),
    ([np.zeros((2, 4))], "uint8", {"scale": np.ones(3)}, "scale must be 4 numbers"),
    ([np.zeros((2, 4))], "int8", {"offset": np.array([0, 0, np.inf, 0])}, "offset holds non-finite"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, batches, dtype, kwargs, message):
    with pytest.raises(BadInput, match=message) as e:
        write_exact_store(tmp_path / "exact.npy", batches, dtype, **kwargs)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_queries_candidates_and_ids_are_refused(tmp_path):
    write_exact_store(tmp_path / "exact.npy", [_vectors(10, 4)], "float32")
    store = open_exact_store(tmp_path / "exact.npy")
    q = _vectors(2, 4)
    for call, message in [
        (lambda: store.rescore(q, np.array([[0, 10], [1, 2]]), 2), "candidates name row 10; .* rows 0..9"),
        (lambda: store.rescore(q, np.array([[0, -2], [1, 2]]), 2), "candidates name row -2"),
        (lambda: store.rescore(q, np.array([[0.0, 1.0], [1, 2]]), 2), "integer row ids"),
        (lambda: store.rescore(q, np.array([[0, 1]]), 2), "one row per query"),
        (lambda: store.rescore(_vectors(2, 5), np.array([[0], [1]]), 2), "dimension 4"),
        (lambda: store.rescore(q * np.nan, np.array([[0], [1]]), 2), "NaN"),
        (lambda: store.rescore(q, np.array([[0], [1]]), 0), "k must be"),
        (lambda: store.rescore(q, np.array([[0], [1]]), 2, "cosine"), "metric 'cosine'"),
        (lambda: store.vectors([3, 10]), "ids name row 10"),
        (lambda: store.vectors([-1]), "ids name row -1"),
    ]:
        with pytest.raises(EmbedpipeError, match=message):
            call()


def test_damaged_stores_are_refused_in_one_line(tmp_path):
    x = _vectors(40, 4)
    write_exact_store(tmp_path / "f.npy", [x], "float32")
    (tmp_path / "t.npy").write_bytes((tmp_path / "f.npy").read_bytes()[:-10])
    with pytest.raises(CorruptArtifact, match="truncated or corrupt"):
        open_exact_store(tmp_path / "t.npy")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4, 2), np.float32))
    with pytest.raises(CorruptArtifact, match="not \\(rows, dim\\)"):
        open_exact_store(tmp_path / "wrong.npy")
    write_exact_store(tmp_path / "c.npy", [x], "uint8", offset=x.min(0), scale=np.ones(4))
    scale_path(tmp_path / "c.npy").unlink()
    with pytest.raises(CorruptArtifact, match="offset and scale c.scale.npy are missing"):
        open_exact_store(tmp_path / "c.npy")
    with pytest.raises(BadInput, match="does not exist"):
        open_exact_store(tmp_path / "none.npy")


@pytest.mark.parametrize("dtype,kwargs", [("float16", {}), ("uint8", {"offset": np.full(16, -4.0),
                                                                      "scale": np.full(16, 8 / 255)})])
def test_append_adds_rows_at_the_end_with_the_stores_own_quantization(tmp_path, dtype, kwargs):
    x = _vectors()
    write_exact_store(tmp_path / "exact.npy", [x[:500]], dtype, **kwargs)
    record = append_exact_store(tmp_path / "exact.npy", _batches(x[500:], 40))
    assert (record["rows"], record["dim"], record["dtype"]) == (600, 16, dtype)
    whole = tmp_path / "whole.npy"
    write_exact_store(whole, [x], dtype, **kwargs)
    assert (tmp_path / "exact.npy").read_bytes() == whole.read_bytes()  # the same file as one write makes
    assert open_exact_store(tmp_path / "exact.npy").rows == 600


def test_an_append_cut_short_leaves_the_store_as_it_was_and_the_next_one_cuts_the_rest_off(tmp_path):
    x = _vectors()
    write_exact_store(tmp_path / "exact.npy", [x[:300]], "float32")
    before = (tmp_path / "exact.npy").read_bytes()

    def batches():
        yield x[300:400]
        raise KeyboardInterrupt  # the run stopped half way through

    with pytest.raises(KeyboardInterrupt):
        append_exact_store(tmp_path / "exact.npy", batches())
    store = open_exact_store(tmp_path / "exact.npy")
    assert store.rows == 300 and (tmp_path / "exact.npy").stat().st_size > len(before)
    np.testing.assert_array_equal(store.vectors(np.arange(300)), x[:300])
    append_exact_store(tmp_path / "exact.npy", [x[300:]])
    np.testing.assert_array_equal(open_exact_store(tmp_path / "exact.npy").vectors(np.arange(600)), x)
    with pytest.raises(BadInput, match="dimension 8, earlier rows 16"):
        append_exact_store(tmp_path / "exact.npy", [x[:5, :8]])
    np.save(tmp_path / "numpy.npy", x[:10])  # numpy's own 2-d files have the same 128-byte header
    append_exact_store(tmp_path / "numpy.npy", [x[10:20]])
    np.testing.assert_array_equal(np.load(tmp_path / "numpy.npy"), x[:20])
