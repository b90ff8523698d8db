"""Where a location is: a local path or any pyarrow/fsspec URL -> (filesystem, path inside it), and
whether the Hugging Face Hub may be reached from here.

    >>> filesystem, path = resolve_filesystem("data/corpus.parquet")
    >>> type(filesystem).__name__, path
    ('LocalFileSystem', 'data/corpus.parquet')
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import BadInput
from ..fsio import is_url


def resolve_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """A path or URL -> (filesystem, path inside it). Local paths, s3://, gs://, hdfs:// via pyarrow;
    any other scheme fsspec knows (memory://, http://, az://, ...) through fsspec."""
    if not is_url(location):
        return pafs.LocalFileSystem(), str(location)
    if location.startswith("hf://") and hub_offline():
        raise BadInput(f"cannot read {location}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1); "
                       "unset it (or set HF_HUB_OFFLINE=0) to read from the Hub, or give a local copy")
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as e:
        raise BadInput(f"cannot open {location}: no filesystem for that URL ({e})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids the Hub (huggingface_hub's reading: 1, true, yes, on): for hf://
    corpora here and for model ids (model/resolve.py)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
