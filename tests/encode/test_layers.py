"""Every layer's hidden states from one pass of the all-layers export (real optimum export, real
onnxruntime), checked against transformers' own output_hidden_states on tiny BERT and DistilBERT."""

import numpy as np
import pytest

from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.encode.layers import PoolingGridEncoder, resolve_layers
from embedpipe.encode.pooling import pool
from embedpipe.errors import ConfigError
from embedpipe.model.export import ensure_exported
from embedpipe.model.export_layers import ensure_layers_exported
from embedpipe.model.resolve import resolve_model

TEXTS = ["the cat", "a small dog ran on the road", "fish", "the old red house by the river and the tree"]


def torch_hidden_states(model_dir, encoder: PoolingGridEncoder):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    feeds = encoder.feeds(encoder.tokenize(TEXTS))
    with torch.no_grad():
        states = model(input_ids=torch.from_numpy(feeds["input_ids"]),
                       attention_mask=torch.from_numpy(feeds["attention_mask"]),
                       output_hidden_states=True).hidden_states
    return [s.numpy() for s in states], feeds["attention_mask"]


@pytest.mark.parametrize("which", ["bert", "distilbert"])
def test_every_layer_and_pooling_from_one_pass_matches_transformers(which, tiny_model_dir, tiny_distilbert_dir):
    model_dir = str(tiny_model_dir if which == "bert" else tiny_distilbert_dir)
    encoder = PoolingGridEncoder.load(model=model_dir, normalize=False, max_length=None, layers=[0, 1, 2])
    assert encoder.all_layers and encoder.layers == 2
    pairs = [(p, layer) for layer in (0, 1, 2) for p in ("cls", "mean", "max")]
    got, tokens = encoder.encode_many(TEXTS, pairs, token_states=True)
    states, mask = torch_hidden_states(model_dir, encoder)
    for pooling, layer in pairs:
        np.testing.assert_allclose(got[(pooling, layer)], pool(pooling, states[layer], mask), atol=1e-5)
    lengths = mask.sum(1)
    assert tokens.states.dtype == np.float16 and np.diff(tokens.offsets).tolist() == lengths.tolist()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(tokens.states[tokens.offsets[i]:tokens.offsets[i + 1]], states[2][i, :n],
                                   atol=2e-3, rtol=1e-3)   # float16
    # the last layer, normalized, is exactly what `encode` gives
    normalized = PoolingGridEncoder.load(model=model_dir, normalize=True, max_length=None, layers=[0, 2])
    plain = TextEncoder.load(EncoderSpec(model=model_dir, pooling="mean")).encode(TEXTS)
    np.testing.assert_allclose(normalized.encode_many(TEXTS, [("mean", 2)])[0][("mean", 2)], plain, atol=1e-5)


def test_the_last_layer_alone_uses_the_normal_export(tiny_model_dir):
    encoder = PoolingGridEncoder.load(model=str(tiny_model_dir), normalize=True, max_length=None, layers=[2])
    assert not encoder.all_layers
    assert encoder.exported.path == ensure_exported(resolve_model(str(tiny_model_dir))).path
    with pytest.raises(Exception, match="all-layers export"):
        encoder.encode_many(TEXTS, [("mean", 1)])


def test_the_all_layers_export_is_cached_apart_from_the_normal_one(tiny_model_dir):
    model = resolve_model(str(tiny_model_dir))
    layered = ensure_layers_exported(model)
    plain = ensure_exported(model)
    assert layered.path != plain.path and layered.path.parent.name == "onnx-layers"
    assert layered.info["hidden_states"] == 3 and "hidden_states" not in plain.info
    assert (layered.path / "tokenizer.json").read_bytes() == (plain.path / "tokenizer.json").read_bytes()
    stamp = layered.onnx_path.stat().st_mtime_ns
    assert ensure_layers_exported(model).onnx_path.stat().st_mtime_ns == stamp   # loaded, not exported again


@pytest.mark.parametrize("spec, expected", [("last", [6]), ("all", [0, 1, 2, 3, 4, 5, 6]), ((-1, -2, 3), [3, 5, 6]),
                                            ((0, -7), [0])])
def test_layer_lists_resolve_to_hidden_state_numbers(spec, expected):
    assert resolve_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", [(7,), (-8,), "first"])
def test_a_layer_the_model_has_not_is_refused(spec):
    with pytest.raises(ConfigError, match="layers"):
        resolve_layers(spec, 6)
