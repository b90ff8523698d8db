"""A model made ready for the torch backend: an export directory without a graph, cached by content.

    >>> ready = ensure_torch_ready(resolve_model(None))       # doctest: +SKIP
    >>> ready.info["backend"], ready.info["model_path"]       # PyTorch loads the model's own weights  # doctest: +SKIP

It holds what an ONNX export holds besides the graph, made the same way (export.py's helpers): the
fast tokenizer as transformers saves it (tokenizer.json), BERT's pooler weights (pooler.npz), the
weights of the modules after pooling (modules.npz), config.json, and export.json with the recipe,
the default max_length and the pad id, plus ``backend: torch`` and ``hidden_states`` (every layer is
there: PyTorch gives them all). So both backends tokenize, pool and apply modules with the same code,
and the vectors mean the same. It needs transformers and safetensors only, never optimum or
onnxruntime; weights are read from safetensors files only (never a pickle). It lives under
``$EMBEDPIPE_CACHE/torch/KEY``, keyed by the model's content and directory (export.json records the
directory PyTorch loads the weights from).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import BadInput, EmbedpipeError, first_line
from ..formats.export_dir import EXPORT_INFO, POOLER_WEIGHTS, ExportedModel, load_export
from ..fsio import staged_dir, write_json_atomic
from .export import EXPORT_FORMAT, _default_max_length, _export_record, _quiet, _save_recipe, _shipped_pooler
from .recipe import read_recipe
from .resolve import ResolvedModel, cache_root

TORCH_FORMAT = 1   # bump when what this directory holds changes
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


def torch_ready_key(model: ResolvedModel) -> str:
    return hashlib.sha256(f"torch{TORCH_FORMAT}|{EXPORT_FORMAT}|{model.content_hash}|{model.path.resolve()}"
                          .encode()).hexdigest()[:24]


def ensure_torch_ready(model: ResolvedModel) -> ExportedModel:
    """The cached torch-backend directory of ``model``, made first if needed (seconds: no graph)."""
    target = cache_root() / "torch" / torch_ready_key(model)
    if (target / EXPORT_INFO).exists():
        loaded = load_export(target)
        if loaded.info.get("content_hash") == model.content_hash and loaded.info.get("backend") == "torch":
            return loaded
    try:
        config = json.loads((model.path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"model {model.name}: config.json cannot be read ({e})") from None
    if isinstance(config, dict) and config.get("auto_map"):
        raise BadInput(f"model {model.name} ships its own Python code (auto_map in config.json), which the torch "
                       "backend never runs; use backend onnx after `embedpipe export --trust-remote-code`")
    if not any((model.path / name).is_file() for name in SAFETENSORS):
        raise BadInput(f"model {model.name} has no model.safetensors; the torch backend loads weights from "
                       "safetensors only (never a pickle): use backend onnx, or convert the weights")
    recipe = read_recipe(model.path)  # refuses a module it cannot apply
    with staged_dir(target) as staging:
        try:
            info = _prepare(model, recipe, staging)
        except EmbedpipeError:
            raise
        except Exception as e:  # transformers, tokenizers, safetensors: a damaged or unusable model
            raise BadInput(f"model {model.name} ({model.path}) cannot be loaded: {type(e).__name__}: "
                           f"{first_line(e)} (are its files complete?)") from None
        write_json_atomic(staging / EXPORT_INFO, info)
    return ExportedModel(target, info)


def _prepare(model: ResolvedModel, recipe, staging: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(model.path, local_files_only=True)
        if not tokenizer.is_fast:
            raise EmbedpipeError(f"{model.name} has no fast tokenizer (tokenizer.json); embedpipe needs one")
        tokenizer.save_pretrained(staging)   # tokenizer.json, as the ONNX export writes it
        config = AutoConfig.from_pretrained(model.path, local_files_only=True)
    shutil.copy2(model.path / "config.json", staging / "config.json")   # position limits are read from it
    pooler = _shipped_pooler(model.path)
    if pooler is not None:
        np.savez(staging / POOLER_WEIGHTS, **pooler)
    hidden_size = int(config.hidden_size)
    return _export_record(model, "", None, None, None, backend="torch", hidden_size=hidden_size,
                          **_save_recipe(model, recipe, hidden_size, staging),
                          default_max_length=_default_max_length(model.path, config, tokenizer),
                          has_pooler=pooler is not None, pad_token_id=tokenizer.pad_token_id or 0,
                          hidden_states=int(config.num_hidden_layers) + 1)
