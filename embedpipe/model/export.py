"""Export a resolved model once to ONNX with optimum, into a cache keyed by its content and options.

    >>> exported = ensure_exported(resolve_model(None))      # doctest: +SKIP
    >>> exported.onnx_path, exported.default_max_length  # doctest: +SKIP

The export is a plain feature-extraction graph (``last_hidden_state``), so one export serves every
pooling; BERT's pooler weights are saved beside it (``pooler.npz``) for ``--pooling pooler``, and so are
the weights of a sentence-transformers model's modules after its pooling (``modules.npz``: Dense,
LayerNorm), with the model's recipe (pooling, modules, prompts) in export.json.
Exports live in a cache keyed by the model's content hash and the export options.

A model directory that ships its own ONNX graph (``onnx/model.onnx``, as many hub repositories do)
is used as it is when no optimization or quantization is asked for: no optimum, torch or
transformers is imported, so ``encode`` works without them; only exporting a model that ships no
graph needs optimum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadInput, EmbedpipeError, first_line
from ..formats.export_dir import (
    CONFIG_NAMES,
    EXPORT_INFO,
    MODULE_WEIGHTS,
    POOLER_WEIGHTS,
    ExportedModel,
    config_value,
    load_export,
)
from ..fsio import check_output, read_json, staged_dir, write_json_atomic
from .optimize import check_export_options, optimize_graph
from .quantize import RECIPES_VERSION, cpu_isa, quality_warning, quantize_int8
from .recipe import ModelRecipe, module_weights, read_recipe
from .resolve import ResolvedModel, cache_root

EXPORT_FORMAT = 5  # bump when the layout of an export directory (or what an option makes) changes
log = logging.getLogger(__name__)


def export_key(model: ResolvedModel, optimize: str | None, quantize: str | None) -> str:
    recipes = f"|recipes {RECIPES_VERSION}" if quantize else ""  # so fp32 exports stay cached when int8 changes
    return hashlib.sha256(f"{EXPORT_FORMAT}|{model.content_hash}|{optimize}|{quantize}|{cpu_isa()}{recipes}"
                          .encode()).hexdigest()[:24]


def ensure_exported(model: ResolvedModel, *, optimize: str | None = None, quantize: str | None = None,
                    out: str | os.PathLike | None = None, trust_remote_code: bool = False) -> ExportedModel:
    """Return the cached export of ``model`` with these options, exporting it first if needed.

    With ``out`` the export is written there instead of the cache (replacing it only when complete);
    ``out`` may not be, hold or lie inside the model directory, nor be a file or a directory of other
    files (an earlier export there is replaced).
    A model that ships its own Python code (``auto_map`` in config.json) is exported only with
    ``trust_remote_code=True``; loading an export never runs model code.
    """
    check_export_options(optimize, quantize)
    if out is not None:
        check_export_out(out, model.path)
    target = Path(out) if out is not None else cache_root() / "onnx" / export_key(model, optimize, quantize)
    if (target / EXPORT_INFO).exists():
        loaded = load_export(target)
        if loaded.info.get("content_hash") == model.content_hash and out is None:
            return loaded
    if not trust_remote_code and needs_remote_code(model.path):
        raise BadInput(f"model {model.name} ships its own Python code (auto_map in config.json); embedpipe "
                             "runs it only when asked: `embedpipe export --trust-remote-code` once, then encode")
    shipped = shipped_graph(model.path) if optimize is None and quantize is None else None
    with staged_dir(target) as staging:
        try:
            if shipped is not None:
                info = _adopt_shipped(model, shipped, staging)
            else:
                info = _export(model, staging, optimize, quantize, trust_remote_code)
        except EmbedpipeError:
            raise
        except Exception as e:  # torch, safetensors, transformers, optimum: a damaged or unusable model
            raise BadInput(f"model {model.name} ({model.path}) cannot be loaded and exported: "
                           f"{type(e).__name__}: {first_line(e)} (are its weight files complete?)") from None
        write_json_atomic(staging / EXPORT_INFO, info)
    return ExportedModel(target, info)


SHIPPED_GRAPH = "onnx/model.onnx"


def shipped_graph(path: Path) -> Path | None:
    """The model's own feature-extraction ONNX graph with its fast tokenizer, or None."""
    graph = path / SHIPPED_GRAPH
    return graph if graph.is_file() and (path / "tokenizer.json").is_file() else None


def _adopt_shipped(model: ResolvedModel, graph: Path, staging: Path) -> dict:
    """An export made from the graph the model ships (its external data files too), read with onnx,
    json and safetensors only."""
    import shutil

    import onnx

    outputs = [o.name for o in onnx.load(str(graph), load_external_data=False).graph.output]
    if "last_hidden_state" not in outputs:
        raise BadInput(f"{graph} has no last_hidden_state output (outputs: {', '.join(outputs)}); "
                       "export the model with `embedpipe export` instead")
    for file in graph.parent.iterdir():
        if file.name == graph.name or file.name.startswith(graph.name + "_data") or file.suffix == ".data":
            shutil.copy2(file, staging / file.name)
    shutil.copy2(model.path / "tokenizer.json", staging / "tokenizer.json")
    config = json.loads((model.path / "config.json").read_text())
    hidden_size = config_value(config, "hidden_size")
    if hidden_size is None:
        raise BadInput(f"{model.path / 'config.json'} names no hidden size ({' / '.join(CONFIG_NAMES['hidden_size'])})")
    recipe = read_recipe(model.path)
    pooler = _shipped_pooler(model.path)
    if pooler is not None:
        np.savez(staging / POOLER_WEIGHTS, **pooler)
    log.info("using the ONNX graph %s ships (%s)", model.name, SHIPPED_GRAPH)
    return _export_record(model, graph.name, None, None, None, shipped_graph=SHIPPED_GRAPH,
                          hidden_size=hidden_size, **_save_recipe(model, recipe, hidden_size, staging),
                          default_max_length=_shipped_max_length(model.path, config), has_pooler=pooler is not None,
                          pad_token_id=_shipped_pad_id(model.path, config))


def _export_record(model: ResolvedModel, onnx_file: str, optimize: str | None, quantize: str | None,
                   quantized: dict | None, **fields) -> dict:
    """export.json: which model, how its graph was made and which file holds it, then ``fields`` (the
    model's shape, recipe, lengths and ids)."""
    return {
        "export_format": EXPORT_FORMAT,
        "model_name": model.name,
        "model_path": str(model.path),
        "content_hash": model.content_hash,
        "optimize": optimize,
        "quantize": quantize,
        "quantize_isa": cpu_isa() if quantize else None,
        "quantize_recipe": quantized,
        "onnx_file": onnx_file,
        **fields,
    }


def _shipped_pooler(path: Path) -> dict[str, np.ndarray] | None:
    """BERT's pooler weights (``*pooler.dense.weight`` / ``.bias``) from model.safetensors, if any."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as f:
        names = [n for n in f.keys() if n.endswith("pooler.dense.weight")]
        if not names:
            return None
        prefix = names[0][: -len("weight")]
        return {"weight": f.get_tensor(prefix + "weight").astype(np.float32),
                "bias": f.get_tensor(prefix + "bias").astype(np.float32)}


def _shipped_max_length(path: Path, config: dict) -> int:
    """As ``_default_max_length``, from the json files: sentence-transformers' max_seq_length, else
    the smaller of the position embeddings and the tokenizer's model_max_length."""
    value = (read_json(path / "sentence_bert_config.json") or {}).get("max_seq_length")
    if value:
        return int(value)
    tokenizer_config = read_json(path / "tokenizer_config.json") or {}
    limits = [config_value(config, "max_position_embeddings"), tokenizer_config.get("model_max_length")]
    limits = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
    return min(limits) if limits else 512


def _shipped_pad_id(path: Path, config: dict) -> int:
    """The pad token's id: in the tokenizer's padding settings, else its pad token looked up, else the config's."""
    tokenizer = read_json(path / "tokenizer.json") or {}
    padding = tokenizer.get("padding") or {}
    if isinstance(padding.get("pad_id"), int):
        return padding["pad_id"]
    pad = (read_json(path / "tokenizer_config.json") or {}).get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    for token in tokenizer.get("added_tokens") or []:
        if token.get("content") == pad:
            return int(token["id"])
    return int(config.get("pad_token_id") or 0)


def check_export_out(out: str | os.PathLike, model_dir: str | os.PathLike | None) -> Path:
    """Refuse an export directory that would overwrite the model (or hold it, or lie inside it, which
    would change the model's content hash), or replace a file or a directory that is not an export."""
    out = check_output(out, {"model": model_dir})
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_INFO).exists():
        raise BadInput(f"output {out} already holds files that are not an embedpipe export; "
                       "choose a new or empty directory")
    return out


def needs_remote_code(path: Path) -> bool:
    """Whether a model directory asks transformers to import Python code it ships (``auto_map``)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("auto_map"))


def _export(model: ResolvedModel, staging: Path, optimize: str | None, quantize: str | None,
            trust_remote_code: bool = False) -> dict:
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise EmbedpipeError(f"exporting {model.name} to ONNX needs optimum: pip install 'optimum-onnx[onnxruntime]' "
                             f"(a model directory that ships {SHIPPED_GRAPH} needs none, without optimize "
                             "or quantize)") from None
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    recipe = read_recipe(model.path)  # refuses a module it cannot apply before the slow export
    log.info("exporting %s to ONNX (once; later runs load the cached export)", model.name)
    with _quiet():
        try:
            main_export(str(model.path), staging, task="feature-extraction", library_name="transformers",
                        do_validation=False, local_files_only=True, trust_remote_code=trust_remote_code)
        except (ValueError, KeyError, OSError) as e:
            raise EmbedpipeError(f"optimum cannot export {model.name} to ONNX: {e}") from None
        onnx_file = "model.onnx"
        tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        if not tokenizer.is_fast:
            raise EmbedpipeError(f"{model.name} has no fast tokenizer (tokenizer.json); embedpipe needs one")
        tokenizer.save_pretrained(staging)  # writes tokenizer.json: the encoder and quantize's check load it
        config = AutoConfig.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        max_length = _default_max_length(model.path, config, tokenizer)
        # Quantize before optimizing: the quantizer cannot type the fused (com.microsoft) ops O2+ makes.
        quantized = None
        if quantize:
            limits = [max_length, ExportedModel(staging, {}).position_limit]
            onnx_file, quantized = quantize_int8(staging, onnx_file, staging / "tokenizer.json",
                                                 min(v for v in limits if v))
        if optimize:
            onnx_file = optimize_graph(staging, onnx_file, optimize)
        for stale in staging.glob("*.onnx"):
            if stale.name != onnx_file:
                stale.unlink()
        torch_model = AutoModel.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        pooler = getattr(torch_model, "pooler", None)
        dense = getattr(pooler, "dense", None)
        if dense is not None:
            np.savez(staging / POOLER_WEIGHTS, weight=dense.weight.detach().numpy().astype(np.float32),
                     bias=dense.bias.detach().numpy().astype(np.float32))
    if quantized and (warning := quality_warning(quantized)):  # after _quiet, which silences warnings
        log.warning("%s", warning)
    return _export_record(model, onnx_file, optimize, quantize, quantized, hidden_size=int(config.hidden_size),
                          **_save_recipe(model, recipe, int(config.hidden_size), staging),
                          default_max_length=max_length, has_pooler=dense is not None,
                          pad_token_id=tokenizer.pad_token_id or 0)


def _save_recipe(model: ResolvedModel, recipe: ModelRecipe, hidden_size: int, staging: Path) -> dict:
    """The weights of the model's modules after pooling into the export (modules.npz), once each module
    is checked to take the width the one before it gives; returns export.json's "dim" and "recipe"."""
    width = hidden_size
    for module in recipe.modules:
        if module.kind != "Normalize" and module.in_features != width:
            raise BadInput(f"{model.name}: module {module.describe()} takes vectors of {module.in_features} dims, "
                           f"but gets {width}")
        width = module.out_features or width
    if recipe.modules:
        np.savez(staging / MODULE_WEIGHTS, **module_weights(model.path, recipe.modules))
    return {"dim": recipe.output_dim(hidden_size), "recipe": recipe.as_dict()}


def _default_max_length(path: Path, config, tokenizer) -> int:
    st_config = path / "sentence_bert_config.json"
    if st_config.exists():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
    return int(min(v for v in limits if v and v < 1_000_000) if any(v and v < 1_000_000 for v in limits) else 512)


class _quiet:
    """Silence the tracer warnings and info logs export prints; errors still surface."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # onnxruntime's fusion passes log on loggers of many names
        from transformers.utils import logging as hf_logging

        self._hf_level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._hf_level)
        logging.disable(logging.NOTSET)
        self._warnings.__exit__(*exc)
