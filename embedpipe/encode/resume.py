"""Where an encode run keeps its finished shards, so a killed run resumes and a grown corpus
encodes only its new ids.

    OUT/                       the published result: shards + manifest.json (never half-written)
    .OUT.partial/run.json      which run the shards below belong to: encoder config, and the
                               published manifest it extends (None for a fresh output)
    .OUT.partial/part-N.parquet  shards finished by this run (each renamed into place when complete)
    .OUT.lock                  held (flock) while a run writes OUT, so two runs never interleave

A run with the same ``run.json`` picks up the shards already there: their ids are not encoded
again. Finishing a fresh output renames the whole staging directory to OUT; finishing an
incremental run moves its new shards into OUT (new names, earlier shards untouched) and then
replaces manifest.json, the one step that makes them part of the result.

    >>> with run_lock(out):                               # doctest: +SKIP
    ...     state = open_staging(out, key, base=None)
    ...     state.reused, state.next_shard
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import fsio
from ..formats.vectors import MANIFEST, complete_manifest, shard_entry, shard_number
from ..fsio import FileLock, publish_dir, read_json, write_json_atomic

RUN_FILE = "run.json"
log = logging.getLogger("embedpipe.encode")


def staging_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def run_lock(out: Path) -> FileLock:
    """An exclusive lock beside ``out`` for the length of a run (released by the kernel on kill -9)."""
    return FileLock(out.with_name(f".{out.name}.lock"),
                    f"another embedpipe run is writing {out}; wait for it to finish", remove=True)


@dataclass
class RunState:
    out: Path
    staging: Path
    base: dict | None      # the published manifest this run extends; None for a fresh output
    reused: list[dict]     # shards an interrupted run with the same key finished (in staging)
    next_shard: int        # the number the next new shard gets


def manifest_signature(manifest: dict | None) -> str | None:
    if manifest is None:
        return None
    return hashlib.sha256(json.dumps(manifest["shards"], sort_keys=True).encode()).hexdigest()


def open_staging(out: Path, key: dict, base: dict | None) -> RunState:
    """Find (or start) the staging area for the run ``key`` extending ``base``."""
    staging = staging_dir(out)
    record = json.loads(json.dumps({"key": key, "base": manifest_signature(base)}, default=str))
    matching = False
    if staging.exists():
        matching = read_json(staging / RUN_FILE) == record
        if not matching:
            log.info("discarding the unfinished run in %s: it was for another config or an older output", staging)
            shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.glob(".*.tmp"):
        leftover.unlink()
    base_files = {s["file"] for s in base["shards"]} if base else set()
    if base is not None and matching:
        # Shards an earlier run was moving into OUT when it stopped: finished, but not yet listed.
        for orphan in out.glob("part-*.parquet"):
            if orphan.name not in base_files:
                os.replace(orphan, staging / orphan.name)
    write_json_atomic(staging / RUN_FILE, record)
    reused = [shard_entry(p) for p in sorted(staging.glob("part-*.parquet"), key=lambda p: shard_number(p.name))]
    taken = [shard_number(name) for name in base_files | {s["file"] for s in reused}]
    if base is not None:
        taken += [shard_number(p.name) for p in out.glob("part-*.parquet")]
    numbers = [n for n in taken if n is not None]
    return RunState(out, staging, base, reused, max(numbers) + 1 if numbers else 0)


def finish(state: RunState, fields: dict, dim: int, dtype: str, new_shards: list[dict]) -> dict:
    """Publish: the manifest lists every shard, old and new; returns it."""
    shards = (state.base["shards"] if state.base else []) + state.reused + new_shards
    manifest = complete_manifest(fields, dim, dtype, shards)
    if state.base is None:
        (state.staging / RUN_FILE).unlink()
        write_json_atomic(state.staging / MANIFEST, manifest)
        publish_dir(state.staging, state.out)
    else:
        for shard in state.reused + new_shards:
            fsio.rename_into_place(state.staging / shard["file"], state.out / shard["file"])
        write_json_atomic(state.out / MANIFEST, manifest)
        shutil.rmtree(state.staging)
    return manifest


def abandon(state: RunState, *, quiet: bool = False) -> str:
    """After an error or a signal: keep finished shards for the next run; drop an empty staging
    area. Returns what was kept, in words (logged unless ``quiet``: the caller says it). Shards are
    counted on disk: one renamed into place just as a signal came is finished too, and so are new
    shards already moved into OUT by a run stopped before its manifest (open_staging takes them back)."""
    listed = {s["file"] for s in state.base["shards"]} if state.base else set()
    moved = [p for p in state.out.glob("part-*.parquet") if p.name not in listed] if state.base else []
    finished = len(list(state.staging.glob("part-*.parquet"))) + len(moved)
    if finished:
        kept = f"{finished} finished shard(s) kept in {state.staging}; the same command resumes from them"
        if not quiet:
            log.warning("%s", kept)
        return kept
    shutil.rmtree(state.staging, ignore_errors=True)
    return "nothing was finished, nothing kept"
