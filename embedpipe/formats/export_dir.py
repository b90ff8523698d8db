"""The export directory contract: what `embedpipe export` writes and every encoder loads.

    EXPORT/model.onnx (or model_quantized.onnx, model_optimized.onnx)  graph with last_hidden_state
    EXPORT/tokenizer.json ...                                         the model's fast tokenizer
    EXPORT/pooler.npz                                                 BERT's pooler weights, if any
    EXPORT/modules.npz                                                weights of the modules after pooling, if any
    EXPORT/export.json                                                what was exported, how (written last)

    >>> exported = load_export(path)          # doctest: +SKIP
    >>> exported.onnx_path, exported.dim, exported.default_max_length  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptArtifact
from ..fsio import read_json

EXPORT_INFO = "export.json"
POOLER_WEIGHTS = "pooler.npz"
MODULE_WEIGHTS = "modules.npz"


@dataclass(frozen=True)
class ExportedModel:
    """An export directory: model.onnx, tokenizer files, export.json, maybe pooler.npz."""

    path: Path
    info: dict

    @property
    def onnx_path(self) -> Path:
        return self.path / self.info["onnx_file"]

    @property
    def default_max_length(self) -> int:
        return int(self.info["default_max_length"])

    @property
    def position_limit(self) -> int | None:
        """The most tokens the model has positions for (its config.json beside the graph), or None
        when it names no limit (relative or rotary positions). RoBERTa-style models number
        positions from ``pad_token_id + 1``: 514 position embeddings hold 512 tokens."""
        config = read_json(self.path / "config.json") or {}
        limit = config.get("max_position_embeddings")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            return None
        pad = config.get("pad_token_id")
        if config.get("model_type") in OFFSET_POSITIONS and isinstance(pad, int) and 0 <= pad < limit:
            limit -= pad + 1
        return limit

    @property
    def hidden_size(self) -> int:
        return int(self.info["hidden_size"])

    @property
    def dim(self) -> int:
        """The width of the vectors the model makes: its hidden size, or the last Dense module's output."""
        return int(self.info.get("dim") or self.info["hidden_size"])

    @property
    def recipe(self):
        """How the model's authors meant it to be used (model/recipe.py), as the export recorded it."""
        from ..model.recipe import ModelRecipe

        return ModelRecipe.from_dict(self.info.get("recipe"))

    def module_weights(self) -> dict[str, np.ndarray]:
        file = self.path / MODULE_WEIGHTS
        if not file.exists():
            return {}
        with np.load(file) as data:
            return {name: data[name] for name in data.files}

    def pooler_weights(self) -> dict[str, np.ndarray] | None:
        file = self.path / POOLER_WEIGHTS
        if not file.exists():
            return None
        with np.load(file) as data:
            return {"weight": data["weight"], "bias": data["bias"]}


# Model types whose position ids start after the padding index (fairseq's convention).
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet", "data2vec-text",
                    "ibert", "luke", "markuplm", "roberta-prelayernorm", "xmod", "bart", "mbart"}


def load_export(path: str | os.PathLike) -> ExportedModel:
    path = Path(path)
    try:
        info = json.loads((path / EXPORT_INFO).read_text())
        if not isinstance(info, dict):
            raise ValueError("export.json is not a JSON object")
    except (OSError, ValueError) as e:
        raise CorruptArtifact(f"{path} is not an embedpipe ONNX export ({e})") from None
    onnx_file = str(info.get("onnx_file", ""))
    # The graph must be a file of the export directory itself; onnxruntime in turn refuses external
    # data (weights in side files) outside the graph's directory, symlinks included.
    if (not onnx_file or Path(onnx_file).name != onnx_file
            or not (path / onnx_file).resolve().is_relative_to(path.resolve())):
        raise CorruptArtifact(f"{path}/{EXPORT_INFO} names ONNX file {onnx_file!r}, "
                              "which is not inside the export directory")
    return ExportedModel(path, info)


