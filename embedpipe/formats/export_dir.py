"""The export directory contract: what `embedpipe export` writes and every encoder loads.

    EXPORT/model.onnx (or model_quantized.onnx, model_optimized.onnx)  graph with last_hidden_state
    EXPORT/tokenizer.json ...                                         the model's fast tokenizer
    EXPORT/pooler.npz                                                 BERT's pooler weights, if any
    EXPORT/modules.npz                                                weights of the modules after pooling, if any
    EXPORT/export.json                                                what was exported, how (written last)

export.json's ``recipe`` is a ``ModelRecipe``: the model's pooling, the modules after it (``Module``)
and its prompts, as model/recipe.py read them from a sentence-transformers directory.

    >>> exported = load_export(path)          # doctest: +SKIP
    >>> exported.onnx_path, exported.dim, exported.default_max_length  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput, CorruptArtifact
from ..fsio import read_json

EXPORT_INFO = "export.json"
POOLER_WEIGHTS = "pooler.npz"
MODULE_WEIGHTS = "modules.npz"
PLAIN_POOLING = "mean"  # what a plain transformers model gets (sentence-transformers does the same)
# The order encode_document tries the model's prompts in (sentence-transformers 5).
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
QUERY_PROMPT_NAME = "query"


@dataclass(frozen=True)
class Module:
    """One module after the pooling, as embedpipe applies it (encode/modules.py)."""

    kind: str                     # "Dense", "LayerNorm" or "Normalize"
    path: str = ""                # its folder in the model directory (weights come from there)
    in_features: int = 0          # Dense: input and output width; LayerNorm: its width
    out_features: int = 0
    bias: bool = True             # Dense: has a bias vector
    activation: str = "identity"  # Dense: a value of model/recipe.py's ACTIVATIONS

    def describe(self) -> str:
        """'Dense(768->256, tanh)', 'LayerNorm(256)', 'Normalize': what manifests and errors show."""
        if self.kind == "Dense":
            return f"Dense({self.in_features}->{self.out_features}, {self.activation})"
        if self.kind == "LayerNorm":
            return f"LayerNorm({self.in_features})"
        return self.kind


@dataclass(frozen=True)
class ModelRecipe:
    """How the model's authors meant its vectors to be made."""

    sentence_transformers: bool = False   # the directory is a sentence-transformers model (modules.json)
    pooling: str = PLAIN_POOLING          # a name in pooling.POOLINGS
    include_prompt: bool = True           # False: prompt tokens are left out of the pooling
    lowercase: bool = False               # sentence_bert_config.json's do_lower_case: texts lowercased first
    modules: tuple[Module, ...] = ()      # applied in order after the pooling
    prompts: dict = field(default_factory=dict)   # name -> text put before each text
    default_prompt_name: str | None = None        # what plain `encode` of sentence-transformers applies

    @property
    def prompt_names(self) -> tuple[str, ...]:
        return tuple(self.prompts)

    def prompt(self, name: str) -> str:
        """The text of the prompt ``name``; an unknown name is an error listing the model's prompts."""
        if name not in self.prompts:
            have = ", ".join(self.prompts) or "none"
            raise BadInput(f"the model has no prompt named {name!r} (its prompts: {have})", fields=("prompt_name",))
        return self.prompts[name]

    def document_prompt(self) -> str:
        """What goes before a document: the first of the model's prompts 'document', 'passage', 'corpus'
        that is not empty, else none; sentence-transformers documents encode_document so. (Its 5.x
        SentenceTransformer fills a missing 'document' prompt with "" when loading, so for a model with only
        'query' and 'passage' prompts, E5-style, its encode_document applies none; embedpipe applies
        'passage', as the model's authors meant.)"""
        return next((self.prompts[n] for n in DOCUMENT_PROMPT_NAMES if self.prompts.get(n)), "")

    def query_prompt(self) -> str:
        """What encode_query puts before a query: the model's 'query' prompt, else none."""
        return self.prompts.get(QUERY_PROMPT_NAME, "")

    def output_dim(self, hidden_size: int) -> int:
        dim = hidden_size
        for module in self.modules:
            dim = module.out_features if module.kind == "Dense" else dim
        return dim

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> ModelRecipe:
        """The recipe an export recorded (export.json); an export without one is a plain model's."""
        if not data:
            return cls()
        try:
            return cls(**{**data, "modules": tuple(Module(**m) for m in data.get("modules") or ())})
        except TypeError as e:
            raise CorruptArtifact(f"the model recipe recorded in an export is not valid ({e})") from None


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
        limit = config_value(config, "max_position_embeddings")
        if limit is None:
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
    def recipe(self) -> ModelRecipe:
        """How the model's authors meant it to be used (read by model/recipe.py), as the export recorded it."""
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


# What each architecture's config.json calls a shape (transformers maps these with each config
# class's ``attribute_map``; the json is read here without transformers, so every reader asks this).
CONFIG_NAMES = {
    "hidden_size": ("hidden_size", "dim", "d_model", "n_embd"),            # DistilBERT: dim; GPT-2: n_embd
    "num_hidden_layers": ("num_hidden_layers", "n_layers", "n_layer", "num_layers"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
}


def config_value(config: dict, name: str) -> int | None:
    """A positive integer a model's config.json gives under ``name`` or its architecture's own name
    for it (``CONFIG_NAMES``); None when none is there.

    >>> config_value({"model_type": "distilbert", "dim": 768, "n_layers": 6}, "hidden_size")
    768
    >>> config_value({"hidden_size": "wide"}, "hidden_size") is None
    True
    """
    for key in CONFIG_NAMES.get(name, (name,)):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


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
    if info.get("backend") == "torch":   # model/torch_export.py: no graph, PyTorch loads the model's weights
        return ExportedModel(path, info)
    onnx_file = str(info.get("onnx_file", ""))
    # The graph must be a file of the export directory itself; onnxruntime in turn refuses external
    # data (weights in side files) outside the graph's directory, symlinks included.
    if (not onnx_file or Path(onnx_file).name != onnx_file
            or not (path / onnx_file).resolve().is_relative_to(path.resolve())):
        raise CorruptArtifact(f"{path}/{EXPORT_INFO} names ONNX file {onnx_file!r}, "
                              "which is not inside the export directory")
    return ExportedModel(path, info)


