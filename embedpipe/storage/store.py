"""A directory on any filesystem: a local path, a shared mount, or an object-store URL (s3://, gs://,
anything pyarrow or fsspec opens), with the few operations an encode run needs there.

    >>> store = Store.at("s3://bucket/vectors")               # doctest: +SKIP
    >>> store.write_json("manifest.json", {...}); store.names("part-")  # doctest: +SKIP

Object stores have no rename, so nothing here relies on one for URLs: a file appears whole when its
upload completes (one PUT, or a multipart upload that becomes visible at its end). Local paths still
write under a temporary name and rename (``fsio.atomic_path``), so a reader never sees half a file.
Credentials and endpoints come from the standard variables every client reads (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), on each machine that opens the store.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from .. import fsio
from ..errors import BadInput, first_line
from ..fsio import local_path
from .filesystem import resolve_filesystem


@dataclass(frozen=True)
class Store:
    location: str                  # what the user gave (path or URL): how messages name it
    filesystem: pafs.FileSystem
    root: str                      # the directory inside ``filesystem``

    @classmethod
    def at(cls, location: str | Path) -> Store:
        filesystem, root = resolve_filesystem(str(location))
        return cls(str(location), filesystem, root.rstrip("/") or "/")

    @property
    def local(self) -> Path | None:
        """The local directory this is, or None for an object store (no rename there)."""
        return local_path(self.location)

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def describe(self, name: str) -> str:
        return f"{self.location.rstrip('/')}/{name}"

    def exists(self, name: str = "") -> bool:
        with storage_errors("reach", self.describe(name) if name else self.location):
            info = self.filesystem.get_file_info(self.path(name) if name else self.root)
        return info.type != pafs.FileType.NotFound

    def names(self, prefix: str = "") -> list[str]:
        """Names of the files directly in this directory that start with ``prefix``, sorted."""
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except (OSError, pa.ArrowException) as e:
            raise BadInput(f"cannot list {self.location}: {first_line(e)}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.startswith(prefix))

    def read_bytes(self, name: str) -> bytes | None:
        try:
            with storage_errors("read", self.describe(name)), self.filesystem.open_input_stream(self.path(name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def copy_to(self, name: str, local: Path, block: int = 1 << 22) -> bool:
        """Stream ``name`` into the local file ``local`` a block at a time (never whole in memory: an index's
        on-disk lists can be larger than RAM); False when ``name`` is missing."""
        try:
            with storage_errors("read", self.describe(name)), self.filesystem.open_input_stream(self.path(name)) as f, \
                    open(local, "wb") as out:
                while chunk := f.read(block):
                    out.write(chunk)
            return True
        except FileNotFoundError:
            return False

    def read_json(self, name: str) -> dict | None:
        """The JSON object in ``name``; None when it is missing or not an object."""
        data = self.read_bytes(name)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def write_json(self, name: str, data: dict) -> None:
        text = json.dumps(data, indent=2, default=str) + "\n"
        if self.local is not None:
            fsio.write_text_atomic(self.local / name, text)
            return
        with storage_errors("write", self.describe(name)), self.filesystem.open_output_stream(self.path(name)) as f:
            f.write(text.encode())

    def sha256(self, name: str) -> str:
        with storage_errors("read", self.describe(name)), self.filesystem.open_input_stream(self.path(name)) as f:
            return fsio.stream_sha256(f)

    def delete(self, names: list[str]) -> None:
        for name in names:
            try:
                with storage_errors("delete", self.describe(name)):
                    self.filesystem.delete_file(self.path(name))
            except FileNotFoundError:
                pass

    def make(self) -> None:
        with storage_errors("create", self.location):
            self.filesystem.create_dir(self.root, recursive=True)

    @contextmanager
    def open_output(self, name: str):
        """A binary stream that becomes the file ``name`` when the block ends without an error
        (local: temporary name + rename; object store: the upload completes on close). It keeps
        the sha256 of what is written as ``stream.sha256``."""
        if self.local is not None:
            with fsio.atomic_path(self.local / name) as tmp, open(tmp, "wb") as raw:
                stream = HashingStream(raw)
                yield stream
            return
        with storage_errors("write", self.describe(name)):
            raw = self.filesystem.open_output_stream(self.path(name))
        stream = HashingStream(raw, self.describe(name))
        try:
            yield stream
        except BaseException:
            _abort_upload(raw)
            raise
        with storage_errors("write", self.describe(name)):
            raw.close()


@contextmanager
def storage_errors(action: str, where: str):
    """A filesystem's own error (an object store not answering, a bucket that does not exist,
    credentials refused, a disk full) as one line naming what could not be done where; a missing
    file stays FileNotFoundError, which callers answer themselves."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as e:
        problem = first_line(e)
        if ". To create buckets" in problem:   # pyarrow's advice names its own option, which no user can set
            problem = problem.split(". To create buckets")[0] + "; create the bucket first"
        raise BadInput(f"cannot {action} {where}: {problem}") from None


def _abort_upload(raw) -> None:
    """Drop an unfinished upload so no partial object appears (S3: the multipart upload is aborted)."""
    try:
        raw.abort()
    except (AttributeError, OSError, pa.ArrowException):
        try:
            raw.close()
        except (OSError, pa.ArrowException):
            pass


class HashingStream:
    """A write-only file object that forwards to ``raw`` and hashes every byte on the way."""

    def __init__(self, raw, where: str = ""):
        self.raw, self.digest, self.size, self.closed, self.where = raw, hashlib.sha256(), 0, False, where

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        with storage_errors("write", self.where):
            self.raw.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()
