"""The only place embedpipe writes files: every result appears whole or not at all.

    atomic_path(path)          write under a temporary name beside ``path``, fsync, rename into place
    write_json_atomic(path, d) the same for a JSON document
    staged_dir(out)            build a directory beside ``out``; it replaces ``out`` in one rename
    FileLock(path, what)       one writer at a time (flock: released by the kernel even on kill -9)
    check_output(out, inputs)  refuse, before anything is touched, an output that is, holds or lies
                               inside one of its inputs, or whose parent cannot be created
    check_output_dir(out, ...) refuse to replace an existing result unless ``overwrite``
    check_output_file(out, ..) the same for a single-file result, which may not be a directory
    read_json(path)            a JSON object, or None when there is none (or it is not one)
    file_sha256(path)          a file's checksum, streamed (stream_sha256: of any binary stream)

    >>> with staged_dir(Path("out")) as staging:        # doctest: +SKIP
    ...     write_json_atomic(staging / "info.json", {"n": 3})
    >>> # out/ now holds info.json; an exception inside the block would have left out/ as it was
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from .errors import BadInput, EmbedpipeError, first_line


def stream_sha256(stream) -> str:
    """The sha256 of what is left in a binary stream (a local file, or a pyarrow filesystem's
    stream), read a MiB at a time."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return stream_sha256(f)


def rename_into_place(src: Path, dst: Path) -> None:
    """The one step that makes a finished file or directory visible (a test injects faults here)."""
    os.replace(src, dst)


def hidden_sibling(path: Path, kind: str) -> Path:
    """``dir/.name.KIND-1a2b3c4d``: a unique name beside ``path``, on the same filesystem (so a
    rename is atomic) and hidden from globs of results."""
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file
    written there is flushed to disk and renamed to ``path``. On an error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # '.*.tmp': what a resumed run sweeps
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        rename_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def publish_dir(staging: Path, out: Path) -> None:
    """Move a complete ``staging`` directory to ``out``, replacing an old ``out`` only at the end."""
    if out.exists():
        old = hidden_sibling(out, "old")
        os.replace(out, old)
        try:
            rename_into_place(staging, out)
        except BaseException:
            os.replace(old, out)  # put the earlier result back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        rename_into_place(staging, out)


@contextmanager
def staged_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh hidden directory beside ``out``; when the block ends without an error it
    replaces ``out`` in one rename. On an error it is removed and ``out`` is left as it was."""
    out = Path(out)
    staging = hidden_sibling(out, "staging")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as e:
        raise BadInput(f"cannot create {staging}: {e.strerror or first_line(e)}") from None
    try:
        yield staging
        publish_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class FileLock:
    """An exclusive, non-blocking flock on ``path`` for the length of a ``with`` block: a second
    holder is refused at once with ``busy`` as the message, not queued."""

    def __init__(self, path: str | os.PathLike, busy: str, *, remove: bool = False):
        self.path, self.busy, self.remove = Path(path), busy, remove
        self.fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:   # a parent no one can create (/proc/x), read-only, full: before any work
            raise BadInput(f"cannot create {self.path}: {e.strerror or first_line(e)}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise EmbedpipeError(self.busy) from None
        return self

    def __exit__(self, *exc) -> None:
        if self.remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def check_output_dir(out: str | os.PathLike, overwrite: bool, marker: str) -> Path:
    """Refuse to replace an existing result unless ``overwrite``; refuse a path that is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a result" if (out / marker).exists() else "files"
        raise BadInput(f"output {out} already holds {what}; pass overwrite=true to replace it", fields=("overwrite",))
    return out


def check_output_file(out: Path, overwrite: bool) -> Path:
    """Refuse a file output that is a directory, or that exists unless ``overwrite``."""
    if out.is_dir():
        raise BadInput(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise BadInput(f"output {out} already exists; pass overwrite=true to replace it", fields=("overwrite",))
    return out


def is_url(location: str | os.PathLike | None) -> bool:
    return location is not None and "://" in str(location)


def local_path(location: str | os.PathLike) -> Path | None:
    """The local path a location names: itself, or the path of a ``file://`` URL; None for any
    other URL (an object store cannot alias a local output)."""
    if not is_url(location):
        return Path(location)
    parsed = urlparse(str(location))
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(url2pathname(parsed.path))
    return None


def _resolved(path: Path, what: str) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop: RuntimeError up to Python 3.12, OSError after
        raise BadInput(f"{what} {path} cannot be resolved ({first_line(e)})") from None


def check_output(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None]) -> Path:
    """Refuse an output that would destroy an input or cannot be written, before anything is touched.

    ``inputs`` maps what each input is ("corpus", "vectors") to its path or URL; None entries are
    ignored. Refused: a URL as ``out`` (every writer here writes local files); ``out`` equal to an
    input, inside one, or holding one (replacing ``out`` would delete it), symlinks followed and a
    ``file://`` input taken as its path; ``out`` holding the working directory; a parent that is a
    file or not writable.

    >>> check_output("corpus.parquet", {"corpus": "corpus.parquet"})
    Traceback (most recent call last):
    embedpipe.errors.BadInput: output corpus.parquet is the corpus corpus.parquet
    """
    if is_url(out):
        raise BadInput(f"output {out} is a URL; outputs are local paths (a shared filesystem on a cluster)")
    target = _resolved(Path(out), "output")
    for what, source in inputs.items():
        local = None if source is None or not str(source) else local_path(source)
        if local is None:
            continue
        path = _resolved(local, what)
        if target == path:
            raise BadInput(f"output {out} is the {what} {source}")
        if target.is_relative_to(path):
            raise BadInput(f"output {out} lies inside the {what} {source}")
        if path.is_relative_to(target):
            raise BadInput(f"output {out} holds the {what} {source}; replacing it would delete it")
    if Path.cwd().resolve().is_relative_to(target):
        raise BadInput(f"output {out} holds the working directory; choose a directory of its own")
    _check_parent(Path(out), target)
    return Path(out)


def _check_parent(out: Path, target: Path) -> None:
    """The nearest existing ancestor of ``out`` must be a writable directory (to create the rest)."""
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"output {out} cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInput(f"output {out} cannot be created: {ancestor} is not writable")
