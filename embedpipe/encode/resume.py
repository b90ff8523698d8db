"""Where an encode run keeps its finished shards, and the commit that makes them the result.

    OUT/manifest.json          the result: it lists every shard; readers trust only what it lists
    staging/run.json           which run the shards there belong to: encoder config, the published
                               manifest it extends, the corpus fingerprint, the piece size
    staging/part-N-A.parquet   shard of piece N, attempt A, written by the worker that encoded it
    staging/part-N-A.json      its receipt, written once the shard is complete (pieces.py)

``staging`` is ``.OUT.partial/`` beside a local OUT (a fresh result then appears by one directory
rename) and OUT itself on an object store, which has no rename: there the manifest, written last
by the driver, is the only commit. Shards of attempts that died, and duplicates of a piece two
attempts both finished, are never listed, and are deleted once the manifest is written.

A run with the same ``run.json`` takes every piece a receipt says is done and encodes only the
rest, whatever stopped the run before (kill -9 of the driver, a lost node, an error).

    >>> with output_lock(out):                                   # doctest: +SKIP
    ...     state = open_staging(Store.at(out), key, base=None, corpus="fp", piece_rows=100_000)
    ...     state.done, state.next_shard, state.piece_rows
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import fsio
from ..formats.vectors import MANIFEST, complete_manifest, shard_number
from ..fsio import FileLock, publish_dir
from ..storage.store import Store
from .pieces import RECEIPT, SHARD

RUN_FILE = "run.json"
log = logging.getLogger("embedpipe.encode")


def staging_store(out: Store) -> Store:
    if out.local is None:
        return out
    return Store.at(out.local.with_name(f".{out.local.name}.partial"))


def output_lock(out: str | Path) -> FileLock:
    """An exclusive lock on the output ``out`` for the length of a run, so two runs never write it
    at once (released by the kernel on kill -9): beside a local OUT; for a URL, on this machine
    only (object stores offer no lock a driver elsewhere sees)."""
    busy = f"another embedpipe run is writing {out}; wait for it to finish"
    if fsio.is_url(out):
        digest = hashlib.sha256(str(out).rstrip("/").encode()).hexdigest()[:16]
        return FileLock(Path(tempfile.gettempdir()) / "embedpipe-locks" / f"{digest}.lock", busy)
    out = Path(out)
    return FileLock(out.with_name(f".{out.name}.lock"), busy, remove=True)


@dataclass
class RunState:
    out: Store
    staging: Store
    base: dict | None      # the published manifest this run extends; None for a fresh output
    piece_rows: int        # rows per piece (= per shard at most), fixed by the run that started
    done: dict[int, dict] = field(default_factory=dict)   # piece number -> the receipt of its finished shard
    next_shard: int = 0    # the first number new pieces get

    @property
    def reused(self) -> list[dict]:
        return [r for r in self.done.values() if r["rows"]]


def manifest_signature(manifest: dict | None) -> str | None:
    if manifest is None:
        return None
    return hashlib.sha256(json.dumps(manifest["shards"], sort_keys=True).encode()).hexdigest()


def open_staging(out: Store, key: dict, base: dict | None, corpus: str, piece_rows: int) -> RunState:
    """Find (or start) the staging area for the run ``key`` over the corpus fingerprint ``corpus``
    extending ``base``; a matching unfinished run's piece size is kept, so its receipts still apply."""
    staging = staging_store(out)
    record = json.loads(json.dumps({"key": key, "base": manifest_signature(base), "corpus": corpus}, default=str))
    found = staging.read_json(RUN_FILE)
    matching = found is not None and {k: v for k, v in found.items() if k != "piece_rows"} == record
    if matching:
        piece_rows = int(found["piece_rows"])
    elif found is not None or _our_files(staging, out):
        log.info("discarding the unfinished run in %s: it was for another config, corpus or output", staging.location)
        _discard(staging, out)
    staging.make()
    if staging.local is not None:
        for leftover in staging.local.glob(".*.tmp"):
            leftover.unlink()
    staging.write_json(RUN_FILE, {**record, "piece_rows": piece_rows})
    state = RunState(out, staging, base, piece_rows)
    if matching:
        state.done = _finished_pieces(staging, out, base)
    numbers = [shard_number(s["file"]) for s in base["shards"]] if base else []
    state.next_shard = max([n for n in numbers if n is not None], default=-1) + 1
    return state


def _finished_pieces(staging: Store, out: Store, base: dict | None) -> dict[int, dict]:
    """Piece number -> one receipt whose shard is there (the first attempt by name, if several)."""
    present = set(staging.names("part-"))
    done = {}
    for name in sorted(present):
        if not RECEIPT.match(name):
            continue
        receipt = staging.read_json(name)
        if not receipt or not isinstance(receipt.get("number"), int) or receipt["number"] in done:
            continue
        shard = receipt.get("file")
        if shard and shard not in present:
            if staging.local is not None and base is not None and out.local is not None \
                    and (out.local / shard).exists():
                # An earlier finish was moving shards into OUT when it stopped: finished, not yet listed.
                fsio.rename_into_place(out.local / shard, staging.local / shard)
            else:
                continue
        done[receipt["number"]] = receipt
    return done


def _our_files(staging: Store, out: Store) -> list[str]:
    """Shards, receipts and run records in ``staging`` that no published manifest lists."""
    listed = {s["file"] for s in (out.read_json(MANIFEST) or {}).get("shards", [])} if staging == out else set()
    return [n for n in staging.names() if (SHARD.match(n) or RECEIPT.match(n) or n == RUN_FILE) and n not in listed]


def _discard(staging: Store, out: Store) -> None:
    """Delete the staging area (a local one whole; on an object store, what no manifest lists)."""
    if staging.local is not None:
        shutil.rmtree(staging.local, ignore_errors=True)
    else:
        staging.delete(_our_files(staging, out))


def manifest_entry(receipt: dict) -> dict:
    entry = {k: receipt[k] for k in ("file", "rows", "sha256", "truncated_rows", "node_id", "source")}
    return {**entry, "documents": receipt["documents"]} if "documents" in receipt else entry


def finish(state: RunState, fields: dict, dim: int, dtype: str, receipts: list[dict]) -> dict:
    """Commit: write the manifest listing every shard, old and new (the last step), then delete
    what it does not list. Returns the manifest."""
    new = [manifest_entry(r) for r in sorted(receipts, key=lambda r: r["number"]) if r["rows"]]
    shards = (state.base["shards"] if state.base else []) + new
    manifest = complete_manifest(fields, dim, dtype, shards)
    listed = {s["file"] for s in shards}
    if state.staging.local is None:                  # an object store: no rename anywhere
        state.out.write_json(MANIFEST, manifest)
        state.out.delete(_our_files(state.staging, state.out))
    elif state.base is None:                         # a fresh local output: one rename publishes it
        state.staging.delete([n for n in state.staging.names() if n not in listed])
        fsio.write_json_atomic(state.staging.local / MANIFEST, manifest)
        publish_dir(state.staging.local, state.out.local)
    else:                                            # extending a local output: new shards, then the manifest
        for shard in new:
            fsio.rename_into_place(state.staging.local / shard["file"], state.out.local / shard["file"])
        fsio.write_json_atomic(state.out.local / MANIFEST, manifest)
        shutil.rmtree(state.staging.local)
    return manifest


def abandon(state: RunState, *, quiet: bool = False) -> str:
    """After an error or a signal: keep finished shards (those with a receipt) for the next run,
    delete shards of attempts that did not finish, drop an empty staging area. Returns what was
    kept, in words (logged unless ``quiet``: the caller says it). Shards are counted in storage: one
    finished just as a signal came counts too, and so do new shards already moved into OUT by a run
    stopped before its manifest (open_staging takes them back)."""
    names = state.staging.names("part-")
    receipts = {RECEIPT.match(n).group(1, 2) for n in names if RECEIPT.match(n)}
    unfinished = [n for n in names if SHARD.match(n) and SHARD.match(n).group(1, 2) not in receipts]
    state.staging.delete(unfinished)
    finished = len(receipts)
    if finished:
        kept = (f"{finished} finished shard(s) kept in {state.staging.location}; "
                "the same command resumes from them")
        if not quiet:
            log.warning("%s", kept)
        return kept
    _discard(state.staging, state.out)
    return "nothing was finished, nothing kept"


def abandon_all(state: RunState) -> None:
    """Drop the whole staging area, finished shards too (they no longer match the corpus)."""
    _discard(state.staging, state.out)
