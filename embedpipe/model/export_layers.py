"""An export variant whose graph outputs every layer's hidden states, cached beside the normal export.

    >>> layered = ensure_layers_exported(resolve_model(None))     # doctest: +SKIP
    >>> layered.info["hidden_states"]     # embeddings + one per layer: 7 for MiniLM-L6  # doctest: +SKIP

The graph's outputs are ``last_hidden_state`` and ``hidden_states.0`` (the embeddings) ..
``hidden_states.L`` (the last layer), as transformers' ``output_hidden_states=True`` gives them; a
caller asks onnxruntime only for the outputs it needs, so it pays for nothing else. Tokenizer files,
``pooler.npz`` and the export.json fields come from the model's normal export (made first if need
be), so both graphs tokenize and pool alike. It is never optimized or quantized at export time
(onnxruntime still fuses at load), and lives under ``$EMBEDPIPE_CACHE/onnx-layers/KEY``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from ..errors import BadInput, EmbedpipeError
from ..formats.export_dir import EXPORT_INFO, ExportedModel, load_export
from ..fsio import staged_dir, write_json_atomic
from .export import EXPORT_FORMAT, _quiet, ensure_exported, needs_remote_code
from .resolve import ResolvedModel, cache_root

LAYERS_FORMAT = 1   # bump when what this directory holds changes
log = logging.getLogger(__name__)


def layers_export_key(model: ResolvedModel) -> str:
    return hashlib.sha256(f"layers{LAYERS_FORMAT}|{EXPORT_FORMAT}|{model.content_hash}".encode()).hexdigest()[:24]


def hidden_state_output(index: int) -> str:
    """The graph output holding hidden state ``index`` (0 = embeddings, L = the last layer)."""
    return f"hidden_states.{index}"


def ensure_layers_exported(model: ResolvedModel, trust_remote_code: bool = False) -> ExportedModel:
    """The cached all-layers export of ``model``, exported first if needed."""
    target = cache_root() / "onnx-layers" / layers_export_key(model)
    if (target / EXPORT_INFO).exists():
        loaded = load_export(target)
        if loaded.info.get("content_hash") == model.content_hash and loaded.info.get("hidden_states"):
            return loaded
    if not trust_remote_code and needs_remote_code(model.path):
        raise BadInput(f"model {model.name} ships its own Python code (auto_map in config.json); embedpipe "
                       "runs it only when asked: `embedpipe export --trust-remote-code` once, then encode")
    plain = ensure_exported(model, trust_remote_code=trust_remote_code)
    with staged_dir(target) as staging:
        layers = _export_all_layers(model, staging, trust_remote_code)
        for item in plain.path.iterdir():
            if item.is_file() and item.suffix not in (".onnx", ".onnx_data") and item.name != EXPORT_INFO:
                shutil.copy2(item, staging / item.name)
        info = {**plain.info, "onnx_file": "model.onnx", "optimize": None, "quantize": None, "quantize_isa": None,
                "quantize_recipe": None, "hidden_states": layers + 1, "layers_format": LAYERS_FORMAT}
        write_json_atomic(staging / EXPORT_INFO, info)
    return ExportedModel(target, info)


def _export_all_layers(model: ResolvedModel, staging: Path, trust_remote_code: bool) -> int:
    """optimum's feature-extraction export with one more output per hidden state; returns the layer count."""
    from optimum.exporters.onnx import main_export
    from optimum.exporters.tasks import TasksManager
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model.path, trust_remote_code=trust_remote_code)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    if not layers:
        raise EmbedpipeError(f"{model.name}: its config names no layer count (num_hidden_layers / n_layers)")
    try:
        constructor = TasksManager.get_exporter_config_constructor(
            exporter="onnx", model_type=config.model_type, task="feature-extraction", library_name="transformers")
    except (KeyError, ValueError) as e:
        raise EmbedpipeError(f"optimum cannot export {model.name}'s hidden states to ONNX: {e}") from None
    base = type(constructor(config))

    class AllHiddenStates(base):
        @property
        def outputs(self):
            outputs = dict(super().outputs)
            for i in range(layers + 1):
                outputs[hidden_state_output(i)] = {0: "batch_size", 1: "sequence_length"}
            return outputs

    log.info("exporting %s with every layer's hidden states (once; later runs load the cached export)", model.name)
    with _quiet():
        try:
            main_export(str(model.path), staging, task="feature-extraction", library_name="transformers",
                        do_validation=False, local_files_only=True, trust_remote_code=trust_remote_code,
                        custom_onnx_configs={"model": AllHiddenStates(config, task="feature-extraction")},
                        model_kwargs={"output_hidden_states": True})
        except (ValueError, KeyError, OSError) as e:
            raise EmbedpipeError(f"optimum cannot export {model.name}'s hidden states to ONNX: {e}") from None
    return int(layers)
