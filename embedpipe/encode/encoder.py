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
from dataclasses import dataclass, replace

import numpy as np

from .. import checks
from ..errors import BadInput, ConfigError, CorruptArtifact, EmbedpipeError, first_line
from ..formats.export_dir import ExportedModel, load_export
from ..formats.vectors import check_finite
from ..model.export import ensure_exported
from ..model.feeds import flatten, pack
from ..model.optimize import OPTIMIZE_LEVELS, QUANTIZE_MODES, check_export_options
from ..model.recipe import ModelRecipe, read_recipe
from ..model.resolve import local_model_dir, resolve_model
from .batching import BatchPlan, batches
from .devices import BACKENDS, PRECISIONS, Placement, check_placement_fields, is_cuda, resolve_placement
from .inflight import InFlight, default_calls, intra_op_threads
from .long_texts import CharCut
from .modules import apply_modules
from .pooling import MODEL_POOLING, NEEDS_POOLER_WEIGHTS, POOLING_CHOICES, check_pooling, l2_normalize, pool


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides what vector a text gets (recorded in every manifest)."""

    model: str | None = None        # HF id or local dir; None = bundled all-MiniLM-L6-v2
    # "model": the model's own (sentence-transformers config, else mean); or a name in pooling.POOLINGS,
    # which replaces only the pooling step
    pooling: str = checks.choice(MODEL_POOLING, POOLING_CHOICES)
    normalize: bool = True          # L2-normalize vectors (cosine = inner product)
    max_length: int | None = None   # tokens per text; None = the model's own limit
    optimize: str | None = checks.choice(None, OPTIMIZE_LEVELS, optional=True)  # ORT graph optimization O1/O2/O3
    quantize: str | None = checks.choice(None, QUANTIZE_MODES, optional=True)   # "int8": dynamic int8 for this CPU
    prompt_name: str | None = None  # put the model's prompt of this name before every text
    prompt: str | None = None       # or this text ("" = no prompt); neither: the model's document prompt, if any
    # Where and how it runs (encode/devices.py); the manifest's last_run records what ran:
    device: str = "auto"            # auto (a GPU when one is visible, else the CPU), cpu, cuda, cuda:N
    backend: str = checks.choice("auto", BACKENDS)        # auto: torch on a GPU, onnx on a CPU
    precision: str = checks.choice("auto", PRECISIONS)    # auto: bf16 (fp16) on a GPU, fp32 on a CPU

    def __post_init__(self):
        checks.path("model", self.model, optional=True)
        checks.text("pooling", self.pooling)
        check_pooling(self.pooling, allow_model=True)
        checks.boolean("normalize", self.normalize)
        checks.at_least("max_length", self.max_length, 2, optional=True)
        check_export_options(self.optimize, self.quantize)
        checks.text("prompt_name", self.prompt_name, optional=True)
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ConfigError("prompt", f"must be a text, got {self.prompt!r}")
        if self.prompt is not None and self.prompt_name is not None:
            raise ConfigError("prompt", "give a prompt text or a prompt_name, not both")
        check_placement_fields(self.device, self.backend, self.precision)
        if (self.backend == "torch" or is_cuda(self.device)) and (self.optimize or self.quantize):
            raise ConfigError("optimize" if self.optimize else "quantize", "is an onnx backend option (CPUs); "
                              "the torch backend runs the model's own weights")


def resolve_spec(spec: EncoderSpec, recipe: ModelRecipe, max_length: int) -> EncoderSpec:
    """The spec with every model default made concrete: the model's pooling for "model", the prompt as
    text (the model's document prompt unless one was chosen), the max_length in use.

    >>> recipe = ModelRecipe(True, "cls", prompts={"query": "q: ", "passage": "p: "})
    >>> resolved = resolve_spec(EncoderSpec(), recipe, 128)
    >>> resolved.pooling, resolved.prompt, resolve_spec(EncoderSpec(prompt_name="query"), recipe, 128).prompt
    ('cls', 'p: ', 'q: ')
    """
    pooling = recipe.pooling if spec.pooling == MODEL_POOLING else spec.pooling
    if spec.prompt is not None:
        prompt = spec.prompt
    elif spec.prompt_name is not None:
        prompt = recipe.prompt(spec.prompt_name)
    else:
        prompt = recipe.document_prompt()
    return replace(spec, pooling=pooling, prompt=prompt, prompt_name=None, max_length=max_length)


def prepare(spec: EncoderSpec) -> tuple[ExportedModel, int]:
    """Resolve and export (or find the cached export of) the spec's model -> (export, max_length)."""
    exported, resolved = prepare_resolved(spec)
    return exported, resolved.max_length


def prepare_resolved(spec: EncoderSpec, remote_gpus: float = 0.0) -> tuple[ExportedModel, EncoderSpec]:
    """``prepare``, with the spec made concrete for this model (``resolve_spec``) and this machine
    (device, backend, precision: ``devices.resolve_placement``; ``remote_gpus``: Ray actors' GPUs)."""
    # An optimized or int8 graph is onnxruntime's: `auto` keeps it (and so the CPU) rather than drop it.
    backend = "onnx" if spec.backend == "auto" and (spec.optimize or spec.quantize) else spec.backend
    placement = resolve_placement(spec.device, backend, spec.precision, remote_gpus=remote_gpus)
    if placement.backend == "torch":
        from ..model.torch_export import ensure_torch_ready

        exported = ensure_torch_ready(resolve_model(spec.model))
    else:
        exported = ensure_exported(resolve_model(spec.model), optimize=spec.optimize, quantize=spec.quantize)
    limit, length = exported.position_limit, spec.max_length or exported.default_max_length
    # The model's own max_seq_length is checked as a given one is (its config can be wrong)
    given = f"max_length {length}" if spec.max_length is not None else f"the model's max_seq_length {length}"
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise BadInput(f"{given} is not a number of tokens of at least 2; pass max_length", fields=("max_length",))
    resolved = resolve_spec(spec, exported.recipe, length)
    resolved = replace(resolved, device=placement.device, backend=placement.backend, precision=placement.precision)
    if resolved.pooling in NEEDS_POOLER_WEIGHTS and not exported.info.get("has_pooler"):
        raise BadInput(f"pooling 'pooler' needs a model with a pooler layer; {exported.info['model_name']} has none")
    if limit is not None and length > limit:
        # Caught here, before any runner starts: onnxruntime (or a Ray actor) would fail mid-run
        # on the first text that long, with an index error that never mentions the length.
        raise BadInput(f"{given} is more than model {exported.info.get('model_name')} has "
                       f"positions for ({limit} tokens); pass max_length={limit} or less", fields=("max_length",))
    return exported, resolved


class TextEncoder:
    """One onnxruntime session plus the model's fast tokenizer; encodes lists of texts.

    Vectors are made as sentence-transformers makes them: ``prompt`` put before each text, the token
    states pooled (leaving the prompt's tokens out when the model says ``include_prompt: false``), then
    the model's modules after pooling (Dense, LayerNorm, Normalize), then the optional L2 normalization.
    """

    def __init__(self, export_dir: str | os.PathLike, pooling: str, normalize: bool, max_length: int,
                 plan: BatchPlan = BatchPlan(), prompt: str = "", placement: Placement | None = None):
        from tokenizers import Tokenizer  # the fast tokenizer itself; importing transformers costs seconds

        self.exported = load_export(export_dir)
        self.pooling, self.normalize, self.max_length, self.plan = check_pooling(pooling), normalize, max_length, plan
        self.pool_weights = self.exported.pooler_weights() if pooling in NEEDS_POOLER_WEIGHTS else {}
        self.recipe = self.exported.recipe
        self.module_weights = self.exported.module_weights() if self.recipe.modules else {}
        self.prompt = prompt or ""
        self.placement = placement or Placement("cpu", self.exported.info.get("backend", "onnx"), "fp32")
        self.threads = plan.threads or os.cpu_count() or 1
        # Batches run concurrently on one onnxruntime session; torch runs one call at a time (its own
        # thread pool on a CPU, one stream on a GPU already fills the device)
        self.calls = InFlight(1 if self.runs_torch else plan.inflight or default_calls(self.threads))
        try:
            self.session = self._open_session()
            self.tokenizer = Tokenizer.from_file(str(self.exported.path / "tokenizer.json"))
        except EmbedpipeError:
            raise
        except Exception as e:  # onnxruntime's and tokenizers' own types: a damaged or truncated file
            raise CorruptArtifact(f"cannot load the encoder in {self.exported.path} ({type(e).__name__}: "
                                  f"{first_line(e)}); if that export is damaged, delete the directory and run "
                                  "again to export the model anew") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        if hasattr(self.session, "plan_for"):   # the torch backend sizes batches by the GPU's free memory
            self.plan = self.session.plan_for(self.plan)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.cut = CharCut(self.tokenizer, max_length)  # very long texts: cut by characters first, same tokens
        self.pad_id = int(self.exported.info.get("pad_token_id") or 0)
        # sentence-transformers counts the prompt's tokens as the tokenizer makes them alone, less a
        # special token it appends (SEP, EOS): that many leading tokens are left out of the pooling.
        self.prompt_tokens = 0 if self.recipe.include_prompt or not self.prompt else self._count_prompt_tokens()
        if self.prompt and self._count_prompt_tokens() >= max_length - 1:   # no token left for any text
            raise BadInput(f"the prompt {self.prompt[:40]!r} fills all {max_length} tokens a text may have: no text "
                           "would be seen and every vector would be the same; shorten the prompt or raise max_length",
                           fields=("max_length",))

    def _count_prompt_tokens(self) -> int:
        prompt = self.prompt.lower() if self.recipe.lowercase else self.prompt
        ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids
        special = {i for i, token in self.tokenizer.get_added_tokens_decoder().items() if token.special}
        return len(ids) - (1 if ids and ids[-1] in special else 0)

    @classmethod
    def load(cls, spec: EncoderSpec, plan: BatchPlan = BatchPlan()) -> TextEncoder:
        exported, resolved = prepare_resolved(spec)
        return cls(exported.path, resolved.pooling, resolved.normalize, resolved.max_length, plan, resolved.prompt,
                   placement_of(resolved))

    @classmethod
    def from_manifest(cls, manifest: dict, threads: int | None = None, *, query: bool = False,
                      prompt_name: str | None = None, prompt: str | None = None, device: str = "auto") -> TextEncoder:
        """The encoder that made a vector directory, to encode more texts exactly the same way; with
        ``query``, queries: the query prompt the manifest recorded, or the ``prompt_name`` / ``prompt`` given;
        on ``device`` (either backend makes the same vectors)."""
        encoder = manifest.get("encoder")
        if not isinstance(encoder, dict):
            raise EmbedpipeError("the manifest has no 'encoder' section; was it written by embedpipe encode?")
        model = manifest.get("model") or {}
        spec = spec_from_record(encoder, model.get("content_hash"), "these vectors were made", model.get("path"))
        if prompt_name is not None or prompt is not None:
            spec = replace(spec, prompt_name=prompt_name, prompt=prompt)
        elif query:
            spec = replace(spec, prompt=encoder.get("query_prompt") or "")
        if device != "auto":
            spec = replace(spec, device=device, optimize=None if device != "cpu" else spec.optimize,
                           quantize=None if device != "cpu" else spec.quantize)
        return cls.load(spec, BatchPlan(threads=threads or min(4, os.cpu_count() or 1)))

    @property
    def runs_torch(self) -> bool:
        """Whether the export is a torch-backend one (model/torch_export.py): no graph, the model's weights."""
        return self.exported.info.get("backend") == "torch"

    def _open_session(self):
        """onnxruntime's session over the graph, or for a torch-backend export (model/torch_export.py)
        PyTorch running the model's own weights (encode/torch_session.py)."""
        if self.runs_torch:
            from .torch_session import TorchSession

            return TorchSession(self.exported, self.placement, self.plan.threads)
        import onnxruntime as ort

        return ort.InferenceSession(str(self.exported.onnx_path), self.session_options(),
                                    providers=["CPUExecutionProvider"])

    def session_options(self):
        """onnxruntime options: intra-op threads that, with the calls in flight, fill ``plan.threads``
        cores (onnxruntime otherwise takes every core of the host, oversubscribing a node shared by
        actors), one inter-op thread, every graph optimization (fusions happen here, at load, so an
        export need not be optimized)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(self.threads, self.calls.calls)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    @property
    def dim(self) -> int:
        return self.exported.dim

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with the model's special tokens, truncated to ``max_length``."""
        return [e.ids for e in self._encodings(texts)[0]]

    def _encodings(self, texts: Sequence[str]):
        """The truncated encodings, and per text whether it had more than ``max_length`` tokens."""
        texts = [self.prompt + t for t in texts] if self.prompt else list(texts)
        if self.recipe.lowercase:  # sentence-transformers lowercases prompt and text together
            texts = [t.lower() for t in texts]
        prepared, cut = self.cut.prepare(texts)  # a very long text: a prefix with the same first tokens
        encodings = self.tokenizer.encode_batch(prepared, add_special_tokens=True)
        truncated = np.fromiter((c or bool(e.overflowing) for c, e in zip(cut, encodings)), dtype=bool,
                                count=len(encodings))
        return encodings, truncated

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) float32, in input order. Empty or null texts are an error."""
        return self.encode_flagging_truncation(texts)[0]

    def encode_flagging_truncation(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``encode``, plus one bool per text: True where it had more than ``max_length`` tokens, so
        the model saw it cut (read off the same tokenization; nothing is tokenized twice)."""
        check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out, np.zeros(0, dtype=bool)
        encodings, truncated = self._encodings(texts)
        flat, starts, lengths = flatten([e.ids for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        plan = list(batches(order, lengths, self.plan))
        # Up to plan.inflight batches at once; each result lands in its rows, in the batches' order.
        for rows, vectors in zip(plan, self.calls.map(lambda rows: self._run(self._pack(flat, starts[rows],
                                                                                          lengths[rows])), plan)):
            out[rows] = vectors
        return out, truncated

    def feeds(self, token_ids: list[list[int]]) -> dict[str, np.ndarray]:
        """The onnxruntime inputs for a list of token id lists (right-padded to the longest)."""
        return self._pack(*flatten(token_ids))

    def _pack(self, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        return pack(flat, starts, lengths, self.pad_id, token_types="token_type_ids" in self.input_names,
                    position_ids="position_ids" in self.input_names)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        hidden = self.session.run(["last_hidden_state"], feeds)[0]
        return self._vectors(self.pooling, hidden, feeds["attention_mask"])

    def _vectors(self, pooling: str, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token states (B, T, D) -> final vectors (B, dim): ``pooling`` (leaving the prompt's tokens
        out where the model says so), the model's modules after pooling, the optional L2 norm."""
        weights = self.pool_weights if pooling in NEEDS_POOLER_WEIGHTS else {}
        vectors = pool(pooling, hidden.astype(np.float32, copy=False), mask, self.prompt_tokens, **weights)
        if self.recipe.modules:
            vectors = apply_modules(vectors, self.recipe.modules, self.module_weights)
        vectors = l2_normalize(vectors) if self.normalize else vectors
        return check_finite(vectors, f"the model in {self.exported.path} gives vectors no index can hold",
                            hint="its weights (or its modules' after pooling) hold NaN or inf, or overflow")


def placement_of(spec: EncoderSpec) -> Placement:
    """The device, backend and precision of a spec ``prepare_resolved`` made concrete."""
    return Placement(spec.device, spec.backend, spec.precision)


def check_texts(texts: Sequence) -> None:
    """Refuse empty, blank or non-string texts, naming how many and where the first is."""
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise EmbedpipeError(f"{len(bad)} text(s) are empty or not strings (first at position {bad[0]})")


RECORDED_FIELDS = ("model", "pooling", "normalize", "max_length", "optimize", "quantize")


def spec_from_record(record: dict, content_hash: str | None, since: str, model_path: str | None = None) -> EncoderSpec:
    """A manifest's 'encoder' section (``spec_to_record``) -> the EncoderSpec it names, refusing a
    model whose content changed ``since`` (what was made with it) when the record's ``content_hash``
    is known. The recorded prompt is a text (a record without one was made before prompts existed:
    no prompt).

    ``model_path`` is the directory the model was resolved to when it was recorded (absolute): the
    record keeps the name the user gave (``./my-model``, for display), which from another working
    directory names nothing or something else, so the recorded directory is used while it exists
    (the content hash still has to match)."""
    try:
        spec = EncoderSpec(**{k: record.get(k) for k in RECORDED_FIELDS}, prompt=record.get("prompt") or "")
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


def spec_to_record(spec: EncoderSpec, max_length: int, recipe: ModelRecipe | None = None) -> dict:
    """An EncoderSpec -> the manifest's 'encoder' section (read back by ``spec_from_record``): the
    spec made concrete for its model (pooling, prompt text, the max_length actually used), with what
    else decides a vector and how queries are to be encoded.

    Keys appear only where they matter, so a record of a model without prompts or modules reads as it
    did before they existed: ``prompt`` and ``query_prompt`` (texts) when not empty, ``modules`` (the
    model's modules after pooling) unless they are at most a final Normalize that ``normalize`` repeats.
    ``recipe`` is read from the model directory when not given.
    """
    if recipe is None:
        recipe = read_recipe(resolve_model(spec.model).path)
    resolved = resolve_spec(spec, recipe, max_length)
    record = {k: getattr(resolved, k) for k in RECORDED_FIELDS}
    if resolved.prompt:
        record["prompt"] = resolved.prompt
    if recipe.query_prompt():
        record["query_prompt"] = recipe.query_prompt()
    modules = [m.describe() for m in recipe.modules]
    if resolved.normalize and modules[-1:] == ["Normalize"]:
        modules.pop()
    if modules:
        record["modules"] = [m.describe() for m in recipe.modules]
    if resolved.prompt and not recipe.include_prompt:
        record["include_prompt"] = False
    return record

