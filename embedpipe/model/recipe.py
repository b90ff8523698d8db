"""What a sentence-transformers model directory says about using it: its pooling, the modules after
the pooling, and its prompts (modules.json, 1_Pooling/config.json, config_sentence_transformers.json).

    >>> recipe = read_recipe(Path("bge-small-en-v1.5"))                        # doctest: +SKIP
    >>> recipe.pooling, [m.kind for m in recipe.modules], recipe.prompt_names   # doctest: +SKIP
    ('cls', ['Normalize'], ('query',))

What it finds is a ``ModelRecipe`` (with its ``Module``s): the record an export keeps in export.json,
so it is defined with that contract (formats/export_dir.py).

A plain transformers model (no modules.json) is pooled with mean and has neither modules nor prompts.
A module embedpipe cannot run exactly (a custom class, a Router, an unknown activation, a pooling that
concatenates several modes) is refused with one line naming it, never silently skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..formats.export_dir import ModelRecipe, Module

# sentence-transformers' Pooling mode names -> embedpipe's (pooling.POOLINGS)
ST_POOLING_MODES = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
                    "weightedmean": "weightedmean", "lasttoken": "lasttoken"}
# The boolean keys older sentence-transformers versions wrote instead of ``pooling_mode``.
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                       "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
# torch activation classes a Dense module may name -> the numpy function encode/modules.py applies.
ACTIVATIONS = {"Tanh": "tanh", "Identity": "identity", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
               "SiLU": "silu"}
MODULES_AFTER_POOLING = ("Dense", "LayerNorm", "Normalize")


def read_recipe(path: Path) -> ModelRecipe:
    """Read a model directory's sentence-transformers configuration; a plain model gets ``ModelRecipe()``."""
    path = Path(path)
    modules_file = path / "modules.json"
    if not modules_file.exists():
        return ModelRecipe()
    entries = _json(modules_file)
    if not isinstance(entries, list) or not entries:
        raise BadInput(f"{modules_file} does not list the model's modules")
    kinds = [_kind(e) for e in entries]
    if kinds[0] != "Transformer":
        raise BadInput(f"{path.name}: embedpipe runs models whose first module is a Transformer; "
                       f"this one starts with {entries[0].get('type')!r}")
    if (entries[0].get("path") or "") not in ("", "."):
        raise BadInput(f"{path.name}: the Transformer module lives in {entries[0]['path']!r}, not the model "
                       "directory itself; point --model at that folder")
    if len(kinds) < 2 or kinds[1] != "Pooling":
        raise BadInput(f"{path.name}: module {_label(entries[1]) if len(entries) > 1 else '(none)'} follows the "
                       "Transformer; embedpipe needs a Pooling module there")
    for entry in entries[1:]:
        _module_folder(path, entry)
    pooling, include_prompt = _pooling(path / entries[1].get("path", "1_Pooling"))
    modules = tuple(_module(path, entry, kind) for entry, kind in zip(entries[2:], kinds[2:]))
    settings = _json(path / "config_sentence_transformers.json", default={})
    prompts = settings.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise BadInput(f"{path / 'config_sentence_transformers.json'}: 'prompts' is not a name -> text mapping")
    transformer = _json(path / "sentence_bert_config.json", default={})
    return ModelRecipe(True, pooling, include_prompt, bool(transformer.get("do_lower_case")), modules,
                       dict(prompts), settings.get("default_prompt_name"))


def module_weights(model_dir: Path, modules: tuple[Module, ...]) -> dict[str, np.ndarray]:
    """The weights of the modules that have some, as float32 arrays named '<position>.weight' / '.bias'
    (what the export saves beside the graph)."""
    weights = {}
    for position, module in enumerate(modules):
        if module.kind == "Normalize":
            continue
        folder = Path(model_dir) / module.path
        tensors = _tensors(folder)
        prefix = "linear" if module.kind == "Dense" else "norm"
        for name in ("weight", "bias"):
            key = f"{prefix}.{name}"
            if key in tensors:
                weights[f"{position}.{name}"] = np.asarray(tensors[key], dtype=np.float32)
                if not np.isfinite(weights[f"{position}.{name}"]).all():
                    raise BadInput(f"{folder}: the {module.kind} module's {key!r} holds NaN or inf; "
                                   "vectors made with it would too")
            elif name == "weight" or module.bias:
                raise BadInput(f"{folder}: the {module.kind} module's weights hold no {key!r}")
        expected = (module.out_features, module.in_features) if module.kind == "Dense" else (module.in_features,)
        if weights[f"{position}.weight"].shape != expected:
            raise BadInput(f"{folder}: {module.describe()} has weights of shape {weights[f'{position}.weight'].shape}")
    return weights


def _check_weight_file(folder: Path) -> None:
    """A module's weights must be in model.safetensors: pytorch_model.bin is a pickle, which embedpipe
    never loads (tests/reliability/test_safe_loading.py)."""
    if (folder / "model.safetensors").exists():
        return
    if (folder / "pytorch_model.bin").exists():
        raise BadInput(f"{folder}: the module's weights are only in pytorch_model.bin, a pickle embedpipe does not "
                       "load; save them as model.safetensors (sentence-transformers' model.save does)")
    raise BadInput(f"{folder}: no model.safetensors for the module's weights")


def _tensors(folder: Path) -> dict:
    from safetensors.numpy import load_file

    _check_weight_file(folder)
    return load_file(str(folder / "model.safetensors"))


def _json(file: Path, default=None):
    if not file.exists():
        if default is not None:
            return default
        raise BadInput(f"{file} is missing")
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"{file} is not readable JSON ({e})") from None


def _kind(entry: dict) -> str | None:
    """'Dense' for a sentence-transformers class of that name, whatever its module path
    (sentence_transformers.models.Dense, ...base.modules.dense.Dense); None for any other class."""
    type_name = str(entry.get("type", "")) if isinstance(entry, dict) else ""
    if not type_name.startswith("sentence_transformers."):
        return None
    return type_name.rsplit(".", 1)[-1]


def _label(entry: dict) -> str:
    return f"{entry.get('type')!r} ({entry.get('path') or entry.get('name')})"


def _pooling(folder: Path) -> tuple[str, bool]:
    config = _json(folder / "config.json")
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1:
        raise BadInput(f"{folder}: the Pooling module concatenates {' + '.join(modes)}; embedpipe pools with "
                       "one mode (pass --pooling to choose one)")
    if modes[0] not in ST_POOLING_MODES:
        raise BadInput(f"{folder}: unknown pooling mode {modes[0]!r}")
    return ST_POOLING_MODES[modes[0]], bool(config.get("include_prompt", True))


def _module_folder(model_dir: Path, entry: dict) -> Path:
    """A module's folder, which must lie inside the model directory (symlinks followed): the export
    cache is keyed by the directory's content, so weights read from elsewhere could change and the
    old export be reused unnoticed (and a model should not read files it does not hold)."""
    folder = entry.get("path") if entry.get("path") is not None else ""
    if not isinstance(folder, str) or "\0" in folder:
        raise BadInput(f"{model_dir / 'modules.json'}: module {_label(entry)} has the path {folder!r}, "
                       "not a folder name")
    root = model_dir.resolve()
    try:
        inside = (model_dir / folder).resolve().is_relative_to(root) and not Path(folder).is_absolute()
    except (OSError, RuntimeError):   # a symlink loop
        inside = False
    if not inside:
        raise BadInput(f"{model_dir / 'modules.json'}: module {_label(entry)} lies outside the model directory "
                       f"({folder!r}); copy it into the model directory and name it by a relative path")
    return model_dir / folder


def _module(model_dir: Path, entry: dict, kind: str | None) -> Module:
    if kind not in MODULES_AFTER_POOLING:
        raise BadInput(f"{model_dir.name}: module {_label(entry)} after the pooling is not one embedpipe can apply "
                       f"exactly (it applies {', '.join(MODULES_AFTER_POOLING)})")
    folder = entry.get("path") or ""
    if kind == "Normalize":
        return Module("Normalize", folder)
    config = _json(model_dir / folder / "config.json")
    if kind == "LayerNorm":
        _check_weight_file(model_dir / folder)
        return Module("LayerNorm", folder, in_features=int(config["dimension"]), out_features=int(config["dimension"]))
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in ("sentence_embedding", None):
            raise BadInput(f"{model_dir.name}: module {_label(entry)} reads or writes {config[key]!r}, not the "
                           "sentence embedding; embedpipe cannot apply it")
    activation_class = str(config.get("activation_function") or "torch.nn.modules.linear.Identity")
    activation = ACTIVATIONS.get(activation_class.rsplit(".", 1)[-1]) if activation_class.startswith("torch.") else None
    if activation is None:
        raise BadInput(f"{model_dir.name}: module {_label(entry)} uses the activation {activation_class!r}; "
                       f"embedpipe applies {', '.join(ACTIVATIONS)}")
    _check_weight_file(model_dir / folder)
    return Module("Dense", folder, in_features=int(config["in_features"]), out_features=int(config["out_features"]),
                  bias=bool(config.get("bias", True)), activation=activation)
