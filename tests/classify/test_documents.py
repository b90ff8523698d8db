"""classify --chunk-tokens: whole documents from their chunks (mean of the chunk vectors) beside the
first chunk alone, on documents whose label shows only past the model's window."""

import json
import random

import numpy as np
import pytest

from embedpipe.classify import ClassifyJob
from embedpipe.classify.data import load_splits
from embedpipe.classify.documents import document_vectors
from embedpipe.classify.features import FeatureCache
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.errors import ConfigError
from tests.classify.helpers import VOCAB, write
from tests.helpers import run_cli

NEUTRAL = "the a of and in to is was for on with as by at from it this that be are".split()


def late_label_rows(n_per_class: int, seed: int) -> dict:
    """Texts of 40 neutral words, then 8 words of their class: truncated at 32 tokens, no label shows."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in VOCAB.items():
        for _ in range(n_per_class):
            texts.append(" ".join([rng.choice(NEUTRAL) for _ in range(40)] + [rng.choice(words) for _ in range(8)]))
            labels.append(label)
    return {"id": [f"r{seed}-{i}" for i in range(len(texts))], "text": texts, "label": labels}


@pytest.fixture(scope="module")
def report(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("late")
    train = write(root / "train.parquet", late_label_rows(30, 0))
    test = write(root / "test.parquet", late_label_rows(15, 1))
    result = run_cli("classify", train, "--test", test, "--model", tiny_model_dir, "--max-length", 32,
                     "--chunk-tokens", 32, "--chunk-overlap", 4, "--pooling", "mean", "--head", "linear",
                     "--save-model", root / "probe", "--out", root / "report", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output), (train, test)


def test_reading_the_whole_document_is_reported_beside_truncation(report):
    got, _ = report
    accuracy = {r["pooling"]: r["accuracy"] for r in got["results"]}
    assert set(accuracy) == {"mean", "mean+chunks", "mean+first"}
    assert accuracy["mean+chunks"] >= accuracy["mean+first"] + 0.3      # the label is only in later chunks
    assert accuracy["mean"] < 0.7 and accuracy["mean+first"] < 0.7
    assert got["saved_model"]["pooling"] == "mean"                      # a probe of a text's own vector
    assert any(note.startswith("documents: each text cut into windows of 32 tokens") for note in got["notes"])


def test_document_vectors_are_the_mean_and_the_first_of_the_chunk_vectors(report, tiny_model_dir):
    _, (train, test) = report
    part = load_splits(str(train), test=str(test), test_fraction=0.2, label_column="label", text_column="text",
                       train_limit=None, seed=0).test
    spec = EncoderSpec(model=str(tiny_model_dir), pooling="mean", max_length=32)
    got = document_vectors(FeatureCache(), spec, part, [("mean", 2)], chunk_tokens=32, overlap=4)
    encoder = TextEncoder.load(spec)
    from embedpipe.encode.chunking import Chunker

    chunker = Chunker(encoder.cut.full, 32, 4, 32)
    text = part.texts[0]
    chunks = encoder.encode([text[a:b] for a, b in chunker.spans(text)])
    assert len(chunks) > 1
    mean = chunks.mean(axis=0)
    assert np.allclose(got[("mean+chunks", 2)][0], mean / np.linalg.norm(mean), atol=1e-5)
    assert np.allclose(got[("mean+first", 2)][0], chunks[0], atol=1e-5)


def test_chunk_fields_are_checked_by_the_job():
    with pytest.raises(ConfigError, match="chunk_overlap must be less than chunk_tokens 8, got 9"):
        ClassifyJob(train="t.parquet", chunk_tokens=8, chunk_overlap=9)
    with pytest.raises(ConfigError, match="chunk_overlap needs chunk_tokens"):
        ClassifyJob(train="t.parquet", chunk_overlap=2)
