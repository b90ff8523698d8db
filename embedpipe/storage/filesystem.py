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

from ..checks import env_seconds
from ..errors import BadInput, first_line
from ..fsio import is_url

# An object store that does not answer must not hang a run: each request gives up after this many
# seconds without a byte (the AWS SDK's low-speed limit), a connection after at most 10, and a
# failed request is tried 3 times in all (the SDK's default retries one for over a minute).
STORE_TIMEOUT_ENV = "EMBEDPIPE_STORE_TIMEOUT_S"
DEFAULT_STORE_TIMEOUT_S = 30.0
STORE_ATTEMPTS = 3


def resolve_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """A path or URL -> (filesystem, path inside it). Local paths, s3://, gs://, hdfs:// via pyarrow;
    any other scheme fsspec knows (memory://, http://, az://, ...) through fsspec."""
    if not is_url(location):
        return pafs.LocalFileSystem(), str(location)
    if location.startswith("hf://") and hub_offline():
        raise BadInput(f"cannot read {location}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1); "
                       "unset it (or set HF_HUB_OFFLINE=0) to read from the Hub, or give a local copy")
    try:
        filesystem, path = pafs.FileSystem.from_uri(location)
        return with_timeouts(filesystem), path
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    except OSError as e:  # from_uri asks an S3 endpoint for the bucket's region: unreachable, refused
        raise BadInput(f"cannot reach {location}: {first_line(e)}") from None
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as e:
        raise BadInput(f"cannot open {location}: no filesystem for that URL ({e})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def with_timeouts(filesystem: pafs.FileSystem) -> pafs.FileSystem:
    """An S3 filesystem as ``from_uri`` made it (endpoint, region, credentials from the environment),
    with bounded waits (``$EMBEDPIPE_STORE_TIMEOUT_S``, default 30) and retries; others unchanged."""
    if not isinstance(filesystem, pafs.S3FileSystem):
        return filesystem
    seconds = env_seconds(STORE_TIMEOUT_ENV, DEFAULT_STORE_TIMEOUT_S)
    options = filesystem.__reduce__()[1][0]   # every option from_uri set, as S3FileSystem takes them
    return pafs.S3FileSystem(**{**options, "connect_timeout": min(seconds, 10.0), "request_timeout": seconds},
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=STORE_ATTEMPTS))


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids the Hub (huggingface_hub's reading: 1, true, yes, on): for hf://
    corpora here and for model ids (model/resolve.py)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
