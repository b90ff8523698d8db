"""embedpipe's vectors against sentence-transformers (and transformers' pooler) on the same model."""

import numpy as np
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.formats.vectors import open_vectors
from tests.helpers import TEXTS, row_cosines

# embedpipe name -> sentence-transformers' Pooling mode
ST_MODES = {"cls": "cls", "mean": "mean", "max": "max", "mean_sqrt_len": "mean_sqrt_len_tokens",
            "weightedmean": "weightedmean", "lasttoken": "lasttoken"}
TINY_MAX_LENGTH = 64


def st_vectors(model_dir, mode, texts, max_length):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(str(model_dir), max_seq_length=max_length)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), mode)],
                                device="cpu")
    return model.encode(texts, batch_size=4, convert_to_numpy=True)


@pytest.fixture(scope="module")
def st_reference(tiny_model_dir):
    return {name: st_vectors(tiny_model_dir, mode, TEXTS, TINY_MAX_LENGTH) for name, mode in ST_MODES.items()}


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["local", "ray"])
@pytest.mark.parametrize("pooling", sorted(ST_MODES))
def test_every_pooling_matches_sentence_transformers(tiny_model_dir, st_reference, corpus, tmp_path, runner,
                                                     pooling, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    job = EncodeJob(str(corpus), out=str(tmp_path / "v"), runner=runner, batch_size=3, window=4,
                    spec=EncoderSpec(model=str(tiny_model_dir), pooling=pooling, normalize=False))
    ids, vectors = open_vectors(encode_corpus(job).out).read_all()
    assert ids.to_pylist() == list(range(len(TEXTS)))
    cosines = row_cosines(vectors, st_reference[pooling])
    assert cosines.min() >= 0.9999, cosines


def test_pooler_matches_transformers_pooler_output(tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = BertModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=TINY_MAX_LENGTH, return_tensors="pt")
        expected = model(**batch).pooler_output.numpy()
    encoder = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), pooling="pooler", normalize=False))
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-5)


@pytest.mark.slow
def test_bundled_minilm_matches_sentence_transformers_through_the_cli(minilm_path, corpus, tmp_path, ray_cluster):
    from click.testing import CliRunner
    from sentence_transformers import SentenceTransformer

    from embedpipe.cli import main

    out = tmp_path / "minilm.vectors"
    result = CliRunner().invoke(main, ["encode", str(corpus), "--out", str(out)])
    assert result.exit_code == 0, result.output
    _, vectors = open_vectors(out).read_all()
    expected = SentenceTransformer(minilm_path, device="cpu").encode(TEXTS)
    assert row_cosines(vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
