"""What a corpus location holds: its files, sorted, and their one format.

    a file                 its format from its name (files.py), or ``file_format`` to override
    a directory            its files of one format, recursively (hidden and _-prefixed ones left out)
    a glob                 ``data/*.jsonl.gz``: the files it matches (hidden ones only when the pattern
                           names them with a leading dot, as in the shell)
    a save_to_disk dir     state.json lists its .arrow files (a DatasetDict: name one split's directory)
    a BEIR folder          its corpus.jsonl (``beir``: ids in ``_id``, title joined to text)

    >>> found = locate(pafs.LocalFileSystem(), "/data/scifact", "scifact/", None)   # doctest: +SKIP
    >>> found.files, found.format, found.beir                                     # doctest: +SKIP
    (['/data/scifact/corpus.jsonl'], 'jsonl', True)
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from ...errors import BadInput, EmbedpipeError, first_line
from .files import FORMATS, format_of

BEIR_CORPUS = ("corpus.jsonl", "corpus.jsonl.gz")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Located:
    files: list[str]   # paths inside the filesystem, sorted (save_to_disk: in the order it wrote them)
    format: str        # one of FORMATS, the same for every file
    beir: bool         # a BEIR dataset folder: its corpus.jsonl


def locate(filesystem: pafs.FileSystem, path: str, location: str, file_format: str | None) -> Located:
    """The files at ``path`` (``location`` as the user gave it, for messages); a filesystem's own
    errors (no network, no credentials, no such bucket) become one line naming the location."""
    try:
        return Located(*find_files(filesystem, path, location, file_format))
    except EmbedpipeError:
        raise
    except Exception as e:  # an fsspec filesystem's own errors
        raise BadInput(f"cannot list corpus {location}: {type(e).__name__}: {first_line(e)}") from None


def find_files(filesystem: pafs.FileSystem, path: str, location: str,
               file_format: str | None) -> tuple[list[str], str, bool]:
    """(files sorted by path, their format, whether ``location`` is a BEIR folder)."""
    if any(c in path for c in GLOB_CHARACTERS) and not exists(filesystem, path):
        files = glob(filesystem, path)
        if not files:
            raise BadInput(f"corpus {location} matches no files")
        return files, one_format(files, location, file_format), False
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise BadInput(f"corpus {location} does not exist")
    if info.type != pafs.FileType.Directory:
        fmt = file_format or format_of(path)
        if fmt is None:
            raise unknown_kind(location)
        return [path], fmt, False
    inside = {i.base_name: i for i in filesystem.get_file_info(pafs.FileSelector(path))}
    if "dataset_dict.json" in inside:
        splits = read_json_file(filesystem, f"{path}/dataset_dict.json").get("splits") or sorted(
            n for n, i in inside.items() if i.type == pafs.FileType.Directory)
        raise BadInput(f"{location} is a Hugging Face DatasetDict (splits: {', '.join(splits)}); "
                       f"give one split's directory, e.g. {location.rstrip('/')}/{splits[0] if splits else 'train'}")
    if "state.json" in inside and file_format in (None, "arrow"):
        state = read_json_file(filesystem, f"{path}/state.json")
        names = [f.get("filename") for f in state.get("_data_files") or []]
        if names and all(names):  # datasets' save_to_disk: its .arrow files, in the order it wrote them
            return [f"{path}/{name}" for name in names], "arrow", False
    for name in BEIR_CORPUS:
        if name in inside and file_format in (None, "jsonl"):
            return [f"{path}/{name}"], "jsonl", True
    selector = pafs.FileSelector(path, recursive=True)
    files = sorted(i.path for i in filesystem.get_file_info(selector)   # none in hidden or _ folders either
                   if i.type == pafs.FileType.File and not any(
                       part.startswith((".", "_")) for part in i.path[len(path):].strip("/").split("/"))
                   and format_of(i.path, in_directory=file_format is None) is not None)
    if file_format is not None:
        files = [f for f in files if format_of(f) == file_format]
    if not files:
        what = f"{file_format} files" if file_format else "corpus files (.parquet, .jsonl, .csv, .arrow)"
        raise BadInput(f"corpus directory {location} holds no {what}")
    return files, one_format(files, location, file_format), False


def one_format(files: list[str], location: str, file_format: str | None) -> str:
    if file_format is not None:
        return file_format
    counts = Counter(format_of(f) for f in files)
    if None in counts:
        raise unknown_kind(next(f for f in files if format_of(f) is None))
    if len(counts) > 1:
        found = ", ".join(f"{counts[fmt]} {fmt}" for fmt in sorted(counts))
        choices = " or ".join(f"format={fmt}" for fmt in sorted(counts))
        raise BadInput(f"{location} holds files of more than one kind ({found}); choose with {choices}",
                       fields=("format",))
    return next(iter(counts))


def unknown_kind(path: str) -> BadInput:
    return BadInput(f"cannot tell from its name what {path} holds (.parquet, .jsonl, .csv, .arrow, each maybe "
                    f"compressed); name it with {' or '.join(f'format={f}' for f in FORMATS)}", fields=("format",))


def exists(filesystem: pafs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def glob(filesystem: pafs.FileSystem, pattern: str) -> list[str]:
    """Files matching a shell pattern (``*`` also crosses directories), listed from the deepest
    directory the pattern names without a wildcard."""
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARACTERS))
    base = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else ".")
    if not exists(filesystem, base):
        return []
    selector = pafs.FileSelector(base, recursive=True)
    found = [i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File]
    if base == ".":
        found = [p[2:] if p.startswith("./") else p for p in found]
    return sorted(p for p in found if fnmatch.fnmatchcase(p, pattern) and not _hidden_unasked(p, pattern))


def _hidden_unasked(path: str, pattern: str) -> bool:
    """Whether ``path`` holds a hidden name (``.a.jsonl``, ``.cache/x``) the pattern does not spell out
    with a leading dot: left out, as the shell's globs and the directory mode leave them out (an
    editor's or a sync tool's leftovers are not corpus files)."""
    asked = {part for part in pattern.split("/") if part.startswith(".")}
    return any(part.startswith(".") and part not in (".", "..") and not any(
        fnmatch.fnmatchcase(part, a) for a in asked) for part in path.split("/"))


def read_json_file(filesystem: pafs.FileSystem, path: str) -> dict:
    try:
        with filesystem.open_input_stream(path) as f:
            value = json.loads(f.read())
    except (OSError, pa.ArrowException, ValueError) as e:
        raise BadInput(f"cannot read {path}: {first_line(e)}") from None
    return value if isinstance(value, dict) else {}
