"""Every architecture embedpipe supports, used as its authors meant it: a tiny random model of each
(real config, a tokenizer of its own kind trained here), saved as a sentence-transformers model with
its own pooling, modules and prompts (tests.helpers.MODEL_VARIANTS), exported for real, and compared
with sentence-transformers' encode_document / encode_query on the same texts."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.formats.vectors import open_vectors
from tests.helpers import MODEL_DIMS, MODEL_VARIANTS, TEXTS, row_cosines, run_cli

ARCHITECTURES = sorted(MODEL_VARIANTS)
QUERIES = ["a cat on a mat", "the river in the city", "red book", "birds"]


def sentence_transformer(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def document_prompt(architecture) -> dict:
    """encode_document's own choice, except for a model whose document prompt is named 'passage'
    (E5-style): sentence-transformers 5 fills in an empty 'document' prompt when loading a model and
    then picks that; the model's authors meant 'passage', which embedpipe applies."""
    prompts = MODEL_VARIANTS[architecture].get("prompts", {})
    return {"prompt_name": "passage"} if "passage" in prompts and "document" not in prompts else {}


@pytest.fixture(scope="module")
def reference(tiny_st_model):
    """Per architecture: (model dir, encode_document(TEXTS), encode_query(QUERIES)) by sentence-transformers."""
    cache = {}

    def get(architecture):
        if architecture not in cache:
            model_dir = tiny_st_model(architecture)
            st = sentence_transformer(model_dir)
            cache[architecture] = (model_dir, st.encode_document(TEXTS, **document_prompt(architecture)),
                                   st.encode_query(QUERIES))
        return cache[architecture]

    return get


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_encode_without_pooling_is_encode_document_and_queries_are_encode_query(architecture, reference, corpus,
                                                                                tmp_path):
    model_dir, documents, queries = reference(architecture)
    out = tmp_path / "v"
    result = run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    vectors_dir = open_vectors(out)
    ids, vectors = vectors_dir.read_all()
    assert ids.to_pylist() == list(range(len(TEXTS)))
    assert vectors.shape == documents.shape == (len(TEXTS), MODEL_DIMS[architecture])
    assert row_cosines(vectors, documents).min() >= 0.9999
    # The comparison can fail: the model gives different texts clearly different vectors.
    unit = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(len(TEXTS), dtype=bool)].max() < 0.999
    # Queries are encoded the way the manifest says: the model's query prompt, the same modules.
    encoder = vectors_dir.manifest["encoder"]
    own = MODEL_VARIANTS[architecture]
    assert vectors_dir.manifest["pooling"] == vectors_dir.manifest["model_pooling"]
    assert encoder.get("query_prompt", "") == own.get("prompts", {}).get("query", "")
    query_vectors = TextEncoder.from_manifest(vectors_dir.manifest, query=True).encode(QUERIES)
    assert row_cosines(query_vectors, queries).min() >= 0.9999


@pytest.mark.slow
def test_ray_runner_matches_encode_document_for_every_architecture(reference, corpus, tmp_path, ray_cluster):
    """The pooling, modules and prompt run inside the Ray actors (through TextEncoder) as they do locally."""
    worst = {}
    for architecture in ARCHITECTURES:
        model_dir, documents, _ = reference(architecture)
        job = EncodeJob(str(corpus), out=str(tmp_path / architecture), runner="ray", workers=2, window=4,
                        batch_size=3, spec=EncoderSpec(model=str(model_dir)))
        ids, vectors = open_vectors(encode_corpus(job).out).read_all()
        assert ids.to_pylist() == list(range(len(TEXTS)))
        assert vectors.shape[1] == MODEL_DIMS[architecture]
        worst[architecture] = float(row_cosines(vectors, documents).min())
    assert min(worst.values()) >= 0.9999, worst


@pytest.mark.parametrize("architecture", ["bert", "qwen2"])
def test_search_ranks_and_scores_as_query_times_documents(architecture, reference, corpus, tmp_path):
    """Both models end in Normalize, so encode_query(q) @ encode_document(docs).T is what the index holds."""
    model_dir, documents, queries = reference(architecture)
    out, index = tmp_path / "v", tmp_path / "index"
    assert run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out).exit_code == 0
    assert run_cli("index", out, "--out", index).exit_code == 0
    expected = queries @ documents.T
    for query, scores in zip(QUERIES, expected):
        result = run_cli("search", index, query, "-k", "5", "--json")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.output)["hits"]
        np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1][:5], atol=1e-4)
        np.testing.assert_allclose([scores[h["id"]] for h in hits], [h["score"] for h in hits], atol=1e-4)


def test_a_query_prompt_can_be_overridden_or_dropped(reference, corpus, tmp_path):
    model_dir, documents, _ = reference("bert")
    st = sentence_transformer(model_dir)
    out, index = tmp_path / "v", tmp_path / "index"
    assert run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out).exit_code == 0
    assert run_cli("index", out, "--out", index).exit_code == 0
    query = QUERIES[0]
    for flags, st_prompt in ((["--no-prompt"], ""), (["--prompt", "find: "], "find: "),
                             (["--prompt-name", "document"], "passage: ")):
        result = run_cli("search", index, query, "-k", "3", "--json", *flags)
        assert result.exit_code == 0, result.output
        hits = json.loads(result.output)["hits"]
        scores = st.encode_query([query], prompt=st_prompt)[0] @ documents.T
        np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1][:3], atol=1e-4)


def test_index_tunes_on_queries_encoded_with_the_query_prompt(reference, corpus, tmp_path):
    from embedpipe.index import IndexConfig
    from embedpipe.index.samples import tuning_vectors

    model_dir, _, queries = reference("qwen2")
    out = tmp_path / "v"
    assert run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out).exit_code == 0
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": list(range(len(QUERIES))), "text": QUERIES}), path)
    vectors = tuning_vectors(IndexConfig(tuning_vectors=str(path)), open_vectors(out), np.random.default_rng(0))
    assert row_cosines(vectors, queries).min() >= 0.9999


def test_document_prompt_choices_are_recorded_and_applied(reference, corpus, tmp_path):
    model_dir, documents, _ = reference("xlm-roberta")
    st = sentence_transformer(model_dir)
    for flags, st_prompt in (([], "passage: "), (["--no-prompt"], ""), (["--prompt-name", "query"], "query: "),
                             (["--prompt", "text: "], "text: ")):
        out = tmp_path / f"v{len(flags)}{st_prompt.strip(': ')}"
        result = run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out, *flags)
        assert result.exit_code == 0, result.output
        vectors_dir = open_vectors(out)
        assert vectors_dir.manifest["encoder"].get("prompt", "") == st_prompt
        expected = st.encode(TEXTS, prompt=st_prompt)
        assert row_cosines(vectors_dir.read_all()[1], expected).min() >= 0.9999


def test_a_named_pooling_replaces_only_the_pooling_step(reference, corpus, tmp_path):
    """`--pooling mean` on a cls model with a Dense: mean-pooled, then the same Dense and Normalize."""
    from sentence_transformers import SentenceTransformer

    model_dir, _, _ = reference("bert")
    st = SentenceTransformer(str(model_dir), device="cpu")
    st[1].pooling_mode = "mean"
    out = tmp_path / "v"
    result = run_cli("encode", corpus, "--model", model_dir, "--runner", "local", "--out", out, "--pooling", "mean")
    assert result.exit_code == 0, result.output
    manifest = open_vectors(out).manifest
    assert (manifest["pooling"], manifest["model_pooling"]) == ("mean", "cls")
    assert row_cosines(open_vectors(out).read_all()[1], st.encode_document(TEXTS)).min() >= 0.9999
