"""Behaviour the fast paths must keep (never timings): batching, truncation, quantization choices."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import batching
from embedpipe.encode.encoder import BatchPlan, EncoderSpec, TextEncoder, prepare
from embedpipe.encode.pieces import plan_pieces
from embedpipe.formats.corpus import open_corpus
from tests.helpers import TEXTS, row_cosines


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir):
    exported, max_length = prepare(EncoderSpec(model=str(tiny_model_dir)))
    return exported, max_length


@pytest.mark.parametrize("plan", [BatchPlan(batch_size=1), BatchPlan(batch_size=3), BatchPlan(token_budget=40),
                                  BatchPlan(batch_size=128, token_budget=1), BatchPlan(max_padding=1.0)])
def test_batching_never_changes_a_vector(tiny_export, plan):
    """Length-sorted token-budget batches give each text the vector it gets alone, in input order."""
    exported, max_length = tiny_export
    texts = TEXTS * 3
    alone = TextEncoder(exported.path, "mean", False, max_length, BatchPlan(batch_size=1))
    expected = np.stack([alone.encode([t])[0] for t in texts])
    batched = TextEncoder(exported.path, "mean", False, max_length, plan).encode(texts)
    np.testing.assert_allclose(batched, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("max_padding", [0.0, 0.5, 1.0])
def test_batches_respect_both_budgets_and_the_padding_bound(tiny_export, max_padding):
    exported, max_length = tiny_export
    plan = BatchPlan(batch_size=4, token_budget=50, max_padding=max_padding)
    encoder = TextEncoder(exported.path, "mean", True, max_length, plan)
    lengths = np.array([3, 60, 7, 7, 12, 1, 25, 9, 9, 9, 40, 2, 9, 9, 8])
    order = np.argsort(-lengths, kind="stable")
    batches = list(batching.batches(order, lengths, encoder.plan))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for rows in batches:
        assert len(rows) <= 4
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 50
        assert lengths[rows].min() >= (1 - max_padding) * lengths[rows].max()
    if max_padding == 0.0:   # the four 9s fill one batch, the fifth 9 the next: no padding at all
        assert [lengths[rows].tolist() for rows in batches if 9 in lengths[rows]] == [[9, 9, 9, 9], [9]]


def test_feeds_pad_right_with_the_pad_id_and_mask_it(tiny_export):
    exported, max_length = tiny_export
    encoder = TextEncoder(exported.path, "cls", True, max_length)
    feeds = encoder.feeds([[2, 7, 3], [2, 3], [2, 9, 9, 9, 3]])
    np.testing.assert_array_equal(feeds["input_ids"], [[2, 7, 3, 0, 0], [2, 3, 0, 0, 0], [2, 9, 9, 9, 3]])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert feeds["input_ids"].dtype == np.int64


def test_truncation_is_explicit_and_padding_off(tiny_export):
    exported, max_length = tiny_export
    encoder = TextEncoder(exported.path, "mean", True, 16)
    long, short = encoder.tokenize(["the cat " * 40, "a cat"])
    cls, sep = encoder.tokenizer.token_to_id("[CLS]"), encoder.tokenizer.token_to_id("[SEP]")
    assert len(long) == 16 and long[0] == cls and long[-1] == sep  # cut at max_length, special tokens kept
    assert short == [cls, encoder.tokenizer.token_to_id("a"), encoder.tokenizer.token_to_id("cat"), sep]  # no padding


def test_truncation_flags_mark_exactly_the_texts_over_max_length(tiny_export):
    exported, _ = tiny_export
    encoder = TextEncoder(exported.path, "mean", True, 16)
    texts = ["cat " * n for n in (13, 14, 15, 40)]   # 13 + [CLS] + [SEP] = 15 tokens ... 42
    vectors, truncated = encoder.encode_flagging_truncation(texts)
    assert truncated.tolist() == [False, False, True, True]
    assert np.array_equal(vectors, encoder.encode(texts))


@pytest.mark.slow
def test_bundled_minilm_keeps_256_tokens_not_its_tokenizer_json_128(minilm_path):
    """The bundled tokenizer.json pads and truncates at 128; sentence-transformers uses 256."""
    from sentence_transformers import SentenceTransformer

    encoder = TextEncoder.load(EncoderSpec())
    assert encoder.max_length == 256
    text = "the sun and the moon and the stars " * 40
    ids = encoder.tokenize([text, "a cat"])
    assert [len(x) for x in ids] == [256, 4]
    model = SentenceTransformer(minilm_path, device="cpu")
    assert len(model.tokenize([text])["input_ids"][0]) == 256
    expected = model.encode([text, "a cat"])
    vectors = encoder.encode([text, "a cat"])
    assert row_cosines(vectors, expected).min() >= 0.9999


def test_int8_quantizes_weight_matmuls_and_keeps_attention_matmuls_fp32(tiny_model_dir):
    import onnx

    exported, max_length = prepare(EncoderSpec(model=str(tiny_model_dir), quantize="int8"))
    fp32, _ = prepare(EncoderSpec(model=str(tiny_model_dir)))
    nodes = onnx.load(str(exported.onnx_path)).graph.node
    ops = [n.op_type for n in nodes]
    fp32_nodes = onnx.load(str(fp32.onnx_path)).graph.node
    weights = {i.name for i in onnx.load(str(fp32.onnx_path)).graph.initializer}
    weight_matmuls = sum(1 for n in fp32_nodes if n.op_type == "MatMul" and weights.intersection(n.input))
    activation_matmuls = sum(1 for n in fp32_nodes if n.op_type == "MatMul" and not weights.intersection(n.input))
    assert activation_matmuls == 2 * 2        # Q.K^T and softmax.V in each of 2 layers
    assert ops.count("MatMulInteger") == weight_matmuls
    assert ops.count("MatMul") == activation_matmuls
    assert "DequantizeLinear" not in ops      # the embedding Gather stays fp32
    quantized = TextEncoder(exported.path, "mean", True, max_length).encode(TEXTS)
    reference = TextEncoder(fp32.path, "mean", True, max_length).encode(TEXTS)
    assert (quantized * reference).sum(1).mean() >= 0.95


def test_pieces_read_every_row_once_in_order_whatever_the_row_groups(tmp_path):
    """Pieces cut files into row ranges that cross row-group boundaries; reading them back gives
    every row exactly once, in corpus order, and no piece spans two files."""
    (tmp_path / "c").mkdir()
    for f, rows in enumerate((1000, 3, 250)):
        ids = [f"doc-{f}-{i:04d}" for i in range(rows)]
        pq.write_table(pa.table({"id": ids, "text": [f"cat {i}" for i in ids]}), tmp_path / "c" / f"{f}.parquet",
                       row_group_size=7)
    corpus = open_corpus(str(tmp_path / "c"))
    pieces = plan_pieces(corpus, [0, 1, 2], piece_rows=96, first_number=5)
    assert [p.number for p in pieces] == list(range(5, 5 + len(pieces)))
    assert len({(p.file, p.start) for p in pieces}) == len(pieces) and all(p.rows <= 96 for p in pieces)
    ids = [i for p in pieces for b in corpus.read_rows(p.file, 10, p.start, p.stop)
           for i in b.column(0).to_pylist()]
    expected = [f"doc-{f}-{i:04d}" for f, rows in enumerate((1000, 3, 250)) for i in range(rows)]
    assert ids == expected
