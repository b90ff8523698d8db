"""Very long texts are cut by characters before tokenizing (long_texts.py) and the model sees the
very same tokens: ids, truncation flags and vectors equal those of tokenizing the whole text."""


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.encode.long_texts import CharCut

PIECES = ["the", "cat", "sat", "river", "xylophonequux", "supercalifragilisticexpialidocious", "日本語", "🙂",
          "e\u0301", "Ünïcödé", ",", "!?", "don't", "x" * 120, "##", "[SEP]", "\u200b", "ab" * 70]
SPACES = [" ", "  ", "\n", "\t", " " * 300, "\u3000"]


def truncating(path: str, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


@st.composite
def long_texts(draw):
    """Texts of words and spaces drawn from odd pieces, often longer than any first cut."""
    words = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40))
    repeat = draw(st.sampled_from([1, 10, 100, 400]))
    gaps = draw(st.lists(st.sampled_from(SPACES), min_size=len(words), max_size=len(words)))
    return "".join(w + g for w, g in zip(words, gaps)) * repeat


@pytest.fixture(scope="module")
def tokenizers(tiny_model_dir, minilm_path):
    return {"tiny": str(tiny_model_dir / "tokenizer.json"), "minilm": f"{minilm_path}/tokenizer.json"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(long_texts(), min_size=1, max_size=4), max_length=st.sampled_from([8, 64, 128]),
       which=st.sampled_from(["tiny", "minilm"]))
def test_the_cut_never_changes_the_tokens_or_the_truncation_flag(tokenizers, texts, max_length, which):
    tokenizer = truncating(tokenizers[which], max_length)
    cut = CharCut(tokenizer, max_length)
    prepared, was_cut = cut.prepare(texts)
    got = tokenizer.encode_batch(prepared)
    want = tokenizer.encode_batch(texts)
    assert [e.ids for e in got] == [e.ids for e in want]
    flags = [c or bool(e.overflowing) for c, e in zip(was_cut, got)]
    assert flags == [bool(e.overflowing) for e in want]
    assert all(len(p) <= len(t) for p, t in zip(prepared, texts))


def test_long_texts_get_the_same_vectors_and_a_5_mb_text_is_cut_before_tokenizing(tiny_model_dir):
    encoder = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir)))
    texts = ["cat dog bird " * 4000, "the sun " * 5000 + "moon", "x" * 150_000, "a" + " " * 100_000 + " b",
             "a short text"]
    vectors, truncated = encoder.encode_flagging_truncation(texts)
    whole = encoder.tokenizer.encode_batch(texts)                      # the whole texts, no cut
    reference = np.stack([encoder._run(encoder.feeds([e.ids]))[0] for e in whole])
    np.testing.assert_array_equal(vectors, reference)
    assert list(truncated) == [bool(e.overflowing) for e in whole] == [True, True, False, False, False]
    # 5 MB: its first 64 tokens are those of the 52 kB text above (tokenizing it whole took 17 s on MiniLM).
    huge = "cat dog bird " * 400_000
    huge_vector, huge_truncated = encoder.encode_flagging_truncation([huge])
    np.testing.assert_array_equal(huge_vector[0], reference[0])
    prepared, was_cut = encoder.cut.prepare([huge])
    # What keeps it fast: the tokenizer is handed a prefix of first_cut characters, never the 5 MB.
    assert huge_truncated[0] and was_cut == [True] and len(prepared[0]) <= encoder.cut.first_cut < len(huge) // 1000
