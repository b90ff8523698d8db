"""Properties of the pooling functions (hypothesis): padding on either side changes nothing, the
strategies keep their relations to each other, normalized vectors have unit length or stay zero."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embedpipe.encode.pooling import POOLINGS, l2_normalize, pool

FAST = settings(max_examples=60, deadline=None)


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
