"""index.ivfdata: an index's inverted lists kept on disk (FAISS's OnDiskInvertedLists), beside index.faiss.

index.faiss then holds the quantizers and, per list, where its codes and ids lie in index.ivfdata;
index.json's ``inverted_lists`` names the file and its size. FAISS records the data file's path as it
was when written; readers open it with IO_FLAG_ONDISK_SAME_DIR (the file of that name in index.faiss's
own directory), so an index directory can be moved, copied or downloaded, and read through a pinned
directory handle (``/proc/self/fd/N``).

    >>> on_disk_file({"inverted_lists": {"on": "disk", "file": "index.ivfdata", "bytes": 120000}})
    'index.ivfdata'
    >>> on_disk_file({"inverted_lists": {"on": "ram"}}) is None
    True

FAISS maps the file and reads pages as searches touch them; a file shorter than index.faiss says would
crash the process (SIGBUS) at the first search, so its size is checked against index.json first.
FAISS prints to the C stdout when it maps or grows the file; ``c_stdout_aside`` keeps that out of a
command's standard output (``--json``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss

from ..errors import CorruptArtifact

IVFDATA_FILE = "index.ivfdata"
# read-only: the published file is never changed in place; same dir: the file beside index.faiss,
# wherever the directory is now
ONDISK_READ_FLAGS = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY


def on_disk_file(info: dict) -> str | None:
    """The inverted-lists file index.json names, or None when the lists are inside index.faiss."""
    lists = info.get("inverted_lists") or {}
    if not isinstance(lists, dict) or lists.get("on") != "disk":
        return None
    if lists.get("file") != IVFDATA_FILE:   # the one name FAISS looks for beside index.faiss; never a path
        raise CorruptArtifact(f"index.json names the inverted lists file {lists.get('file')!r}; "
                              f"expected {IVFDATA_FILE}")
    return IVFDATA_FILE


def check_ivfdata(path: Path, info: dict) -> None:
    """One clear line when the on-disk lists index.json names are missing or not the size it says."""
    name = on_disk_file(info)
    data = path / name
    expected = (info.get("inverted_lists") or {}).get("bytes")
    try:
        size = data.stat().st_size
    except OSError:
        raise CorruptArtifact(f"{path}: the inverted lists file {name} that index.json names is "
                              "missing; copy the whole index directory, or rebuild the index") from None
    if isinstance(expected, bool) or not isinstance(expected, int) or size != expected:
        raise CorruptArtifact(f"{data} has {size} bytes, index.json says {expected!r}: truncated or replaced; "
                              "rebuild the index with `embedpipe index`")


@contextmanager
def c_stdout_aside(drop: bool = False) -> Iterator[None]:
    """Send what is printed to standard output (FAISS's on-disk lists print "resizing ..." and "updating
    ondisk filename ...") to standard error, or with ``drop`` nowhere, for the duration; C's buffer is
    flushed before and after. ``drop`` only for short calls: anything printed meanwhile is lost."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    try:
        saved = os.dup(1)
    except OSError:   # no standard output at all: nothing to protect
        yield
        return
    target = os.open(os.devnull, os.O_WRONLY) if drop else 2
    try:
        os.dup2(target, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        if drop:
            os.close(target)
