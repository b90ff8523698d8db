"""Property tests (hypothesis) for the corpus reader and the pooling functions."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embedpipe.encode.pooling import POOLINGS, l2_normalize, pool
from embedpipe.errors import EmbedpipeError
from embedpipe.formats.corpus import check_utf8, open_corpus

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.one_of(st.none(), st.text(max_size=40))            # any Unicode (no lone surrogates: not encodable)
rows = st.lists(texts, max_size=60)


@FAST
@given(rows=rows, row_group=st.integers(1, 70), batch=st.integers(1, 70), string_ids=st.booleans())
def test_reader_yields_every_row_once_in_order(tmp_path_factory, rows, row_group, batch, string_ids):
    path = tmp_path_factory.mktemp("prop") / "c.parquet"
    ids = [f"id-{i}" for i in range(len(rows))] if string_ids else list(range(len(rows)))
    pq.write_table(pa.table({"id": pa.array(ids, pa.string() if string_ids else pa.int64()),
                             "text": pa.array(rows, pa.string())}), path, row_group_size=row_group)
    corpus = open_corpus(str(path))
    got_ids, got_texts = [], []
    for record_batch in corpus.iter_batches(batch):
        assert record_batch.num_rows <= batch
        got_ids += record_batch.column(0).to_pylist()
        got_texts += record_batch.column(1).to_pylist()
    assert (got_ids, got_texts) == (ids, rows) and corpus.rows == len(rows)
    corpus.check_unique_ids()                                   # unique ids: no error
    blank, _ = corpus.find_bad_rows(batch_rows=batch)
    # What the encoder would refuse (None, or nothing left after Python's strip) is what the reader flags.
    assert blank == sum(t is None or not t.strip() for t in rows)


@FAST
@given(ids=st.lists(st.one_of(st.integers(-5, 5), st.integers(-2**63, 2**63 - 1)), min_size=1, max_size=80))
def test_duplicate_ids_are_found_exactly(tmp_path_factory, ids):
    path = tmp_path_factory.mktemp("dup") / "c.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": ["t"] * len(ids)}), path, row_group_size=7)
    repeated = {i for i in ids if ids.count(i) > 1}
    if repeated:
        with pytest.raises(EmbedpipeError, match=f"{len(repeated)} id\\(s\\) occur more than once"):
            open_corpus(str(path)).check_unique_ids(batch_rows=5)
    else:
        assert len(open_corpus(str(path)).check_unique_ids(batch_rows=5)) == len(ids)


@FAST
@given(good=st.lists(st.text(max_size=10), max_size=10), bad=st.lists(st.binary(min_size=1, max_size=8), max_size=5))
def test_invalid_utf8_is_named_by_id(good, bad):
    bad = [b for b in bad if not _decodes(b)]
    values = [t.encode() for t in good] + bad
    ids = pa.array(range(len(values)))
    texts = pa.array(values, pa.binary()).view(pa.string())
    if bad:
        with pytest.raises(EmbedpipeError,
                           match=f"{len(bad)} row\\(s\\) hold text that is not valid UTF-8 \\(ids: {len(good)}"):
            check_utf8(ids, texts)
    else:
        check_utf8(ids, texts)


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@st.composite
def hidden_and_lengths(draw):
    batch, width, dim = draw(st.integers(1, 5)), draw(st.integers(1, 9)), draw(st.integers(1, 6))
    hidden = draw(arrays(np.float32, (batch, width, dim), elements=st.floats(-100, 100, width=32)))
    lengths = draw(st.lists(st.integers(1, width), min_size=batch, max_size=batch))
    return hidden, np.array(lengths)


def masks(lengths, width, left):
    positions = np.arange(width)[None, :]
    n = lengths[:, None]
    return (positions >= width - n) if left else (positions < n)


def pad(hidden, lengths, extra, left):
    """The same real tokens with ``extra`` more padding positions (garbage values) on one side."""
    batch, width, dim = hidden.shape
    out = np.full((batch, width + extra, dim), 1e4, np.float32)
    for row, n in enumerate(lengths):
        tokens = hidden[row, :n]
        if left:
            out[row, width + extra - n:] = tokens
        else:
            out[row, :n] = tokens
    return out, masks(lengths, width + extra, left).astype(np.int64)


@FAST
@given(data=hidden_and_lengths(), extra=st.integers(0, 4), left=st.booleans())
def test_pooling_ignores_padding_wherever_it_is(data, extra, left):
    hidden, lengths = data
    base, base_mask = pad(hidden, lengths, 0, left=False)
    padded, padded_mask = pad(hidden, lengths, extra, left)
    for name in (n for n in POOLINGS if n != "pooler"):
        np.testing.assert_allclose(pool(name, padded, padded_mask), pool(name, base, base_mask), rtol=1e-5, atol=1e-3,
                                   err_msg=name)


@FAST
@given(data=hidden_and_lengths())
def test_pooling_relations(data):
    hidden, lengths = data
    mask = masks(lengths, hidden.shape[1], left=False).astype(np.int64)
    mean, mx = pool("mean", hidden, mask), pool("max", hidden, mask)
    assert (mx >= mean - 1e-3).all()
    np.testing.assert_allclose(pool("mean_sqrt_len", hidden, mask), mean * np.sqrt(lengths)[:, None],
                               rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(pool("cls", hidden, mask), hidden[:, 0])
    np.testing.assert_array_equal(pool("lasttoken", hidden, mask), hidden[np.arange(len(lengths)), lengths - 1])
    order = np.random.default_rng(0).permutation(len(lengths))
    np.testing.assert_array_equal(pool("mean", hidden[order], mask[order]), mean[order])


@FAST
@given(vectors=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 8)),
                      elements=st.floats(-1e3, 1e3, width=32)))
def test_normalized_vectors_have_unit_length_or_stay_zero(vectors):
    out = l2_normalize(vectors)
    norms = np.linalg.norm(out, axis=1)
    nonzero = np.linalg.norm(vectors.astype(np.float64), axis=1) > 1e-6
    np.testing.assert_allclose(norms[nonzero], 1.0, atol=1e-4)
    assert np.isfinite(out).all()
