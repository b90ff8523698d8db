import numpy as np
import pytest

from embedpipe.encode.pooling import POOLINGS, check_pooling, exclude_prompt, l2_normalize, pool
from embedpipe.errors import EmbedpipeError

# Two texts: 3 real tokens and 1 real token, two dims each.
TOKENS = [np.array([[1.0, 2.0], [3.0, -4.0], [5.0, 0.0]]), np.array([[7.0, -1.0]])]
EXPECTED = {
    "cls": [[1, 2], [7, -1]],
    "mean": [[3, -2 / 3], [7, -1]],
    "max": [[5, 2], [7, -1]],
    "mean_sqrt_len": [[9 / np.sqrt(3), -2 / np.sqrt(3)], [7, -1]],
    "weightedmean": [[(1 + 6 + 15) / 6, (2 - 8 + 0) / 6], [7, -1]],
    "lasttoken": [[5, 0], [7, -1]],
}


def padded(side: str):
    """Batch TOKENS with padding on ``side``; padding positions hold garbage that must be ignored."""
    width = max(len(t) for t in TOKENS)
    hidden = np.full((len(TOKENS), width, 2), 99.0, dtype=np.float32)
    mask = np.zeros((len(TOKENS), width), dtype=np.int64)
    for row, tokens in enumerate(TOKENS):
        span = slice(0, len(tokens)) if side == "right" else slice(width - len(tokens), width)
        hidden[row, span], mask[row, span] = tokens, 1
    return hidden, mask


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pooling_matches_hand_computed_values(name, side):
    hidden, mask = padded(side)
    np.testing.assert_allclose(pool(name, hidden, mask), np.array(EXPECTED[name], dtype=np.float32), rtol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooler_is_tanh_dense_over_first_token(side):
    hidden, mask = padded(side)
    weight = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32)
    bias = np.array([0.1, -0.2], dtype=np.float32)
    expected = np.tanh(np.array(EXPECTED["cls"], dtype=np.float32) @ weight.T + bias)
    np.testing.assert_allclose(pool("pooler", hidden, mask, weight=weight, bias=bias), expected, rtol=1e-6)


def test_unknown_pooling_lists_the_valid_ones():
    with pytest.raises(EmbedpipeError) as error:
        check_pooling("avg")
    assert "'avg'" in str(error.value)
    for name in POOLINGS:
        assert name in str(error.value)


def test_l2_normalize_leaves_zero_rows_alone():
    vectors = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])


# The same two texts behind a 2-token prompt (include_prompt: false): pooling sees only the text's
# tokens, and weightedmean weighs them by their place after the prompt (3, 4, 5 and 3), as
# sentence-transformers does.
PROMPT = np.array([[-50.0, 60.0], [70.0, -80.0]])
EXPECTED_WITHOUT_PROMPT = {
    **EXPECTED,
    "weightedmean": [[(3 * 1 + 4 * 3 + 5 * 5) / 12, (3 * 2 + 4 * -4 + 5 * 0) / 12], [7, -1]],
}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_prompt_left_out_of_the_pooling(name, side):
    width = 2 + max(len(t) for t in TOKENS)
    hidden = np.full((len(TOKENS), width, 2), 99.0, dtype=np.float32)
    mask = np.zeros((len(TOKENS), width), dtype=np.int64)
    for row, tokens in enumerate(TOKENS):
        real = np.concatenate([PROMPT, tokens])
        span = slice(0, len(real)) if side == "right" else slice(width - len(real), width)
        hidden[row, span], mask[row, span] = real, 1
    np.testing.assert_allclose(pool(name, hidden, mask, skip_tokens=2),
                               np.array(EXPECTED_WITHOUT_PROMPT[name], dtype=np.float32), rtol=1e-6)


def test_exclude_prompt_clears_the_first_real_tokens_under_either_padding():
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]])
    assert exclude_prompt(mask, 3).tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1]]
    assert exclude_prompt(mask, 0) is mask
