"""Texts -> pooled vectors with an exported ONNX model run by onnxruntime.

    >>> enc = TextEncoder.load(EncoderSpec(pooling="cls"))    # doctest: +SKIP
    >>> enc.encode(["a cat", "a dog"]).shape                  # doctest: +SKIP
    (2, 384)

Within each call texts are sorted by token length and packed into batches under a token budget,
so short texts are not padded to the longest one; the output keeps the input order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from .. import checks
from ..errors import BadInput, ConfigError, CorruptArtifact, EmbedpipeError, first_line
from ..formats.export_dir import ExportedModel, load_export
from ..model.export import ensure_exported
from ..model.optimize import check_export_options
from ..model.resolve import local_model_dir, resolve_model
from .batching import BatchPlan, batches, flatten, pack
from .pooling import NEEDS_POOLER_WEIGHTS, check_pooling, l2_normalize, pool


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides what vector a text gets (recorded in every manifest)."""

    model: str | None = None        # HF id or local dir; None = bundled all-MiniLM-L6-v2
    pooling: str = "mean"           # a name in pooling.POOLINGS
    normalize: bool = True          # L2-normalize vectors (cosine = inner product)
    max_length: int | None = None   # tokens per text; None = the model's own limit
    optimize: str | None = None     # ORT graph optimization level O1/O2/O3
    quantize: str | None = None     # "int8": dynamic int8 quantization for this CPU

    def __post_init__(self):
        checks.path("model", self.model, optional=True)
        checks.text("pooling", self.pooling)
        check_pooling(self.pooling)
        checks.boolean("normalize", self.normalize)
        checks.at_least("max_length", self.max_length, 2, optional=True)
        check_export_options(self.optimize, self.quantize)

    def check(self) -> EncoderSpec:
        """Kept for callers of the earlier API: the spec checked itself when it was built."""
        return self


def prepare(spec: EncoderSpec) -> tuple[ExportedModel, int]:
    """Resolve and export (or find the cached export of) the spec's model -> (export, max_length)."""
    exported = ensure_exported(resolve_model(spec.model), optimize=spec.optimize, quantize=spec.quantize)
    if spec.pooling in NEEDS_POOLER_WEIGHTS and not exported.info.get("has_pooler"):
        raise BadInput(f"pooling 'pooler' needs a model with a pooler layer; {exported.info['model_name']} has none")
    limit = exported.position_limit
    if spec.max_length is not None and limit is not None and spec.max_length > limit:
        # Caught here, before any runner starts: onnxruntime (or a Ray actor) would fail mid-run
        # on the first text that long, with an index error that never mentions the length.
        raise BadInput(f"max_length {spec.max_length} is more than model {exported.info.get('model_name')} has "
                       f"positions for ({limit} tokens); pass max_length={limit} or less", fields=("max_length",))
    return exported, spec.max_length or exported.default_max_length


class TextEncoder:
    """One onnxruntime session plus the model's fast tokenizer; encodes lists of texts."""

    def __init__(self, export_dir: str | os.PathLike, pooling: str, normalize: bool, max_length: int,
                 plan: BatchPlan = BatchPlan()):
        import onnxruntime as ort
        from tokenizers import Tokenizer  # the fast tokenizer itself; importing transformers costs seconds

        self.exported = load_export(export_dir)
        self.pooling, self.normalize, self.max_length, self.plan = check_pooling(pooling), normalize, max_length, plan
        self.pool_weights = self.exported.pooler_weights() if pooling in NEEDS_POOLER_WEIGHTS else {}
        try:
            self.session = ort.InferenceSession(str(self.exported.onnx_path), self.session_options(),
                                                providers=["CPUExecutionProvider"])
            self.tokenizer = Tokenizer.from_file(str(self.exported.path / "tokenizer.json"))
        except Exception as e:  # onnxruntime's and tokenizers' own types: a damaged or truncated file
            raise CorruptArtifact(f"cannot load the encoder in {self.exported.path} ({type(e).__name__}: "
                                  f"{first_line(e)}); if that export is damaged, delete the directory and run "
                                  "again to export the model anew") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.pad_id = int(self.exported.info.get("pad_token_id") or 0)

    @classmethod
    def load(cls, spec: EncoderSpec, plan: BatchPlan = BatchPlan()) -> TextEncoder:
        exported, max_length = prepare(spec)
        return cls(exported.path, spec.pooling, spec.normalize, max_length, plan)

    @classmethod
    def from_manifest(cls, manifest: dict, threads: int | None = None) -> TextEncoder:
        """The encoder that made a vector directory, to encode queries exactly the same way."""
        encoder = manifest.get("encoder")
        if not isinstance(encoder, dict):
            raise EmbedpipeError("the manifest has no 'encoder' section; was it written by embedpipe encode?")
        model = manifest.get("model") or {}
        spec = recorded_spec(encoder, model.get("content_hash"), "these vectors were made", model.get("path"))
        return cls.load(spec, BatchPlan(threads=threads or min(4, os.cpu_count() or 1)))

    def session_options(self):
        """onnxruntime options: ``plan.threads`` intra-op threads (onnxruntime otherwise takes every core
        of the host, oversubscribing a node shared by actors), one inter-op thread, every graph
        optimization (fusions happen here, at load, so an export need not be optimized)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.plan.threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    @property
    def dim(self) -> int:
        return self.exported.dim

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with the model's special tokens, truncated to ``max_length``."""
        return [e.ids for e in self._encodings(texts)]

    def _encodings(self, texts: Sequence[str]):
        return self.tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) float32, in input order. Empty or null texts are an error."""
        return self.encode_flagging_truncation(texts)[0]

    def encode_flagging_truncation(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``encode``, plus one bool per text: True where it had more than ``max_length`` tokens, so
        the model saw it cut (read off the same tokenization; nothing is tokenized twice)."""
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise EmbedpipeError(f"{len(bad)} text(s) are empty or not strings (first at position {bad[0]})")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out, np.zeros(0, dtype=bool)
        encodings = self._encodings(texts)
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
        flat, starts, lengths = flatten([e.ids for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        for rows in batches(order, lengths, self.plan):
            out[rows] = self._run(self._pack(flat, starts[rows], lengths[rows]))
        return out, truncated

    def feeds(self, token_ids: list[list[int]]) -> dict[str, np.ndarray]:
        """The onnxruntime inputs for a list of token id lists (right-padded to the longest)."""
        return self._pack(*flatten(token_ids))

    def _pack(self, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        return pack(flat, starts, lengths, self.pad_id, token_types="token_type_ids" in self.input_names)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        hidden = self.session.run(["last_hidden_state"], feeds)[0].astype(np.float32, copy=False)
        vectors = pool(self.pooling, hidden, feeds["attention_mask"], **self.pool_weights)
        return l2_normalize(vectors) if self.normalize else vectors


def recorded_spec(record: dict, content_hash: str | None, since: str, model_path: str | None = None) -> EncoderSpec:
    """The EncoderSpec a spec_record names, refusing a model whose content changed ``since`` (what
    was made with it) when the record's ``content_hash`` is known.

    ``model_path`` is the directory the model was resolved to when it was recorded (absolute): the
    record keeps the name the user gave (``./my-model``, for display), which from another working
    directory names nothing or something else, so the recorded directory is used while it exists
    (the content hash still has to match)."""
    try:
        spec = EncoderSpec(**{k: record.get(k) for k in ("model", "pooling", "normalize", "max_length",
                                                           "optimize", "quantize")})
    except ConfigError as e:
        raise CorruptArtifact(f"the encoder recorded when {since} is not valid: {e}") from None
    if spec.model is not None and isinstance(model_path, str) and os.path.isabs(model_path) \
            and os.path.isdir(model_path):
        spec = replace(spec, model=model_path)
    actual = resolve_model(spec.model).content_hash
    if content_hash and actual != content_hash:
        raise EmbedpipeError(f"model {spec.model or 'default'} has changed since {since} "
                             f"(content hash {actual[:12]} != {str(content_hash)[:12]})")
    return spec


def model_path_of(spec: EncoderSpec, export_info: dict) -> str:
    """The directory the spec's model resolves to now, absolute: what a manifest records beside the
    name the user gave, so a relative name still finds the model from elsewhere. (The export's own
    ``model_path`` is wherever the first model with this content was exported from.)"""
    local = local_model_dir(spec.model)
    return str(local.resolve()) if local is not None else str(export_info["model_path"])


def spec_record(spec: EncoderSpec, max_length: int) -> dict:
    """The manifest's 'encoder' section: the spec with the max_length actually used."""
    return {**asdict(spec), "max_length": max_length}
