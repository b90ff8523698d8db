"""A sentence-transformers model's own configuration, read (model/recipe.py) and applied in numpy
(encode/modules.py) as sentence-transformers applies it; what embedpipe cannot apply exactly is
refused with one line naming the module."""

import json
import shutil

import numpy as np
import pytest

from embedpipe.encode.encoder import EncoderSpec, resolve_spec, spec_to_record
from embedpipe.encode.modules import apply_modules
from embedpipe.errors import BadInput
from embedpipe.model.recipe import ModelRecipe, Module, read_recipe
from tests.helpers import assert_one_line_error, run_cli, snapshot


@pytest.fixture
def bert_st(tiny_st_model, tmp_path):
    """A private copy of the tiny BERT sentence-transformers model (cls, Dense 32->16 tanh, Normalize)."""
    return shutil.copytree(tiny_st_model("bert"), tmp_path / "model")


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_recipe_of_a_sentence_transformers_model(bert_st):
    recipe = read_recipe(bert_st)
    assert (recipe.sentence_transformers, recipe.pooling, recipe.include_prompt) == (True, "cls", True)
    assert [m.describe() for m in recipe.modules] == ["Dense(32->16, tanh)", "Normalize"]
    assert recipe.document_prompt() == "passage: " and recipe.query_prompt() == "query: "
    assert recipe.output_dim(32) == 16


def test_a_plain_transformers_model_is_mean_pooled_without_modules_or_prompts(tiny_model_dir):
    assert read_recipe(tiny_model_dir) == ModelRecipe()
    resolved = resolve_spec(EncoderSpec(), ModelRecipe(), 64)
    assert (resolved.pooling, resolved.prompt) == ("mean", "")


def test_legacy_pooling_keys_are_read(bert_st):
    edit_json(bert_st / "1_Pooling" / "config.json",
              lambda c: (c.pop("pooling_mode"), c.update(pooling_mode_cls_token=False, pooling_mode_lasttoken=True,
                                                         word_embedding_dimension=32)))
    assert read_recipe(bert_st).pooling == "lasttoken"


def test_a_record_without_prompts_or_modules_keeps_its_old_shape(tiny_model_dir):
    """Vectors made before prompts and modules existed stay current: the record gains no keys."""
    record = spec_to_record(EncoderSpec(model=str(tiny_model_dir)), 64)
    assert set(record) == {"model", "pooling", "normalize", "max_length", "optimize", "quantize"}
    assert record["pooling"] == "mean"


def test_the_record_names_prompt_query_prompt_and_modules(bert_st):
    record = spec_to_record(EncoderSpec(model=str(bert_st)), 64)
    assert (record["pooling"], record["prompt"], record["query_prompt"]) == ("cls", "passage: ", "query: ")
    assert record["modules"] == ["Dense(32->16, tanh)", "Normalize"]
    assert spec_to_record(EncoderSpec(model=str(bert_st), prompt=""), 64).get("prompt") is None


@pytest.mark.parametrize("activation", ["identity", "tanh", "relu", "gelu", "sigmoid", "silu"])
def test_dense_and_layer_norm_match_torch(activation):
    import torch

    torch.manual_seed(0)
    linear, norm = torch.nn.Linear(6, 4), torch.nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    functions = {"identity": torch.nn.Identity(), "tanh": torch.nn.Tanh(), "relu": torch.nn.ReLU(),
                 "gelu": torch.nn.GELU(), "sigmoid": torch.nn.Sigmoid(), "silu": torch.nn.SiLU()}
    x = torch.randn(5, 6)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(norm(functions[activation](linear(x))), dim=1).numpy()
    modules = (Module("Dense", in_features=6, out_features=4, activation=activation),
               Module("LayerNorm", in_features=4, out_features=4), Module("Normalize"))
    weights = {"0.weight": linear.weight.detach().numpy(), "0.bias": linear.bias.detach().numpy(),
               "1.weight": norm.weight.detach().numpy(), "1.bias": norm.bias.detach().numpy()}
    np.testing.assert_allclose(apply_modules(x.numpy(), modules, weights), expected, atol=1e-6)


def _custom_module(model):
    edit_json(model / "modules.json", lambda m: m.insert(2, {"idx": 2, "name": "2", "path": "2_Custom",
                                                             "type": "my_package.layers.Whitening"}))


def _router(model):
    edit_json(model / "modules.json", lambda m: m.insert(2, {"idx": 2, "name": "2", "path": "2_Router",
                                                             "type": "sentence_transformers.models.Router"}))


def _concatenated_pooling(model):
    edit_json(model / "1_Pooling" / "config.json", lambda c: c.update(pooling_mode=["cls", "mean"]))


def _unknown_activation(model):
    edit_json(model / "2_Dense" / "config.json",
              lambda c: c.update(activation_function="torch.nn.modules.activation.Softplus"))


def _dense_on_token_embeddings(model):
    edit_json(model / "2_Dense" / "config.json", lambda c: c.update(module_input_name="token_embeddings"))


def _pickled_dense_weights(model):
    (model / "2_Dense" / "model.safetensors").rename(model / "2_Dense" / "pytorch_model.bin")


def _dense_of_another_width(model):
    edit_json(model / "2_Dense" / "config.json", lambda c: c.update(in_features=48))


REFUSED = {
    "a module of another package": (_custom_module, ["'my_package.layers.Whitening' (2_Custom)",
                                                     "not one embedpipe can apply"]),
    "a Router": (_router, ["'sentence_transformers.models.Router' (2_Router)"]),
    "a pooling that concatenates modes": (_concatenated_pooling, ["concatenates cls + mean", "--pooling"]),
    "an activation embedpipe lacks": (_unknown_activation, ["'torch.nn.modules.activation.Softplus'"]),
    "a Dense over token embeddings": (_dense_on_token_embeddings, ["reads or writes 'token_embeddings'"]),
    "Dense weights only pickled": (_pickled_dense_weights, ["pytorch_model.bin", "model.safetensors"]),
    "a Dense of the wrong width": (_dense_of_another_width, ["Dense(48->16, tanh) takes vectors of 48 dims",
                                                             "gets 32"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_be_applied_exactly_is_refused_in_one_line(case, bert_st, corpus, tmp_path):
    change, fragments = REFUSED[case]
    change(bert_st)
    before = snapshot(tmp_path)
    result = run_cli("encode", corpus, "--model", bert_st, "--runner", "local", "--out", tmp_path / "out")
    assert_one_line_error(result, *fragments)
    assert snapshot(tmp_path) == before


def test_an_unknown_prompt_name_lists_the_models_prompts(bert_st, corpus, tmp_path):
    result = run_cli("encode", corpus, "--model", bert_st, "--runner", "local", "--out", tmp_path / "o",
                     "--prompt-name", "passage")
    assert_one_line_error(result, "no prompt named 'passage'", "its prompts: query, document")
    with pytest.raises(BadInput):
        read_recipe(bert_st).prompt("passage")


def test_prompt_flags_exclude_each_other(bert_st, corpus, tmp_path):
    result = run_cli("encode", corpus, "--model", bert_st, "--out", tmp_path / "o", "--prompt", "x: ", "--no-prompt")
    assert result.exit_code == 2 and "give one of --prompt-name, --prompt and --no-prompt" in result.output
