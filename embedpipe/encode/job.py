"""Encode a whole corpus into a vector directory (the library behind ``embedpipe encode``).

    >>> result = encode_corpus(EncodeJob("corpus.parquet", spec=EncoderSpec(pooling="cls")))  # doctest: +SKIP
    >>> result.out, result.manifest["rows"], result.manifest["dim"]                          # doctest: +SKIP

Runs are keyed on ids, so one mechanism serves three cases:
- a killed run, run again, reuses the shards it finished (kept in ``.OUT.partial``, see resume.py);
- a corpus that grew since OUT was written: only ids not in OUT are encoded, into new shards, and
  the manifest is replaced to list them (shards already published are never rewritten);
- an output already complete for this corpus and config: nothing to do, and the log says so.
Ids removed from the corpus keep their vectors, and a text changed under the same id keeps its old
vector: ``overwrite=True`` rebuilds from scratch. A different encoder config over
an existing output is refused unless ``overwrite``.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import __version__, checks
from ..errors import BadInput, ConfigError
from ..formats.corpus import Corpus, id_hashes, open_corpus
from ..formats.tabular import FORMATS
from ..formats.vectors import (
    DTYPES,
    ShardWriter,
    differences,
    encoder_identity,
    published_manifest,
    read_ids,
    run_key,
    run_key_of,
    vectors_from_column,
    verify_shard,
)
from ..fsio import check_output
from ..model.recipe import ModelRecipe, read_recipe
from ..model.resolve import local_model_dir
from ..progress import Progress
from ..signals import Interrupted, stop_on_signals
from .batching import BatchPlan
from .encoder import EncoderSpec, model_path_of, prepare_resolved, spec_record
from .mapper import EMPTY_TEXT_POLICIES, MapperConfig
from .pooling import MODEL_POOLING
from .resume import abandon, finish, open_staging, run_lock
from .runners import RUNNERS, RayOptions, choose_runner, run_encoder

log = logging.getLogger("embedpipe.encode")


@dataclass
class EncodeJob:
    corpus: str                          # a file, directory, glob or URL: parquet, JSON Lines, CSV, save_to_disk, BEIR
    out: str | None = None               # vector directory; None = CORPUS_STEM.POOLING.vectors
    spec: EncoderSpec = field(default_factory=EncoderSpec)
    text_column: str = "text"
    id_column: str = "id"                # without an "id" column, BEIR's "_id" is taken
    title_column: str | None = None      # joined before the text with a space, as BEIR does (a BEIR folder: "title")
    format: str | None = None            # parquet, jsonl, csv or arrow; None = from the file names
    runner: str = "auto"                 # "ray" (actor pool), "local" (this process) or "auto" (choose_runner:
                                         # Ray for a named cluster or a large corpus, else local)
    ray_address: str | None = None       # join this cluster; None = $RAY_ADDRESS for auto, else embedded local Ray
    workers: int | None = None           # encoder actors; None = one per `threads` CPUs
    threads: int | None = None           # onnxruntime threads per worker; None = local: all cores, Ray: 1-4
    batch_size: int = 128                # texts per onnxruntime call (a token budget caps it too)
    window: int = 8192                   # rows sorted by length together, per mapper call
    empty_text: str = "error"            # null/blank text: "error" stops before encoding, "skip" drops rows
    dtype: str = "float32"               # vector dtype on disk: float32 or float16
    rows_per_shard: int = 100_000
    overwrite: bool = False              # rebuild from scratch (the old output stays until the new one is complete)
    ray_dashboard: bool = False          # embedded local Ray only: start its dashboard (on 127.0.0.1)

    def __post_init__(self):
        checks.path("corpus", self.corpus)
        checks.path("out", self.out, optional=True)
        if not isinstance(self.spec, EncoderSpec):
            raise ConfigError("spec", f"must be an EncoderSpec, got {type(self.spec).__name__}")
        checks.distinct_columns(("text_column", self.text_column), ("id_column", self.id_column))
        if self.title_column is not None:
            checks.distinct_columns(("title_column", self.title_column), ("text_column", self.text_column))
            checks.distinct_columns(("title_column", self.title_column), ("id_column", self.id_column))
        checks.one_of("format", self.format, FORMATS, optional=True)
        checks.one_of("runner", self.runner, tuple(RUNNERS))
        checks.text("ray_address", self.ray_address, optional=True)
        checks.at_least("workers", self.workers, 1, optional=True)
        checks.at_least("threads", self.threads, 1, optional=True)
        checks.at_least("batch_size", self.batch_size, 1)
        checks.at_least("window", self.window, 1)
        checks.one_of("empty_text", self.empty_text, EMPTY_TEXT_POLICIES)
        checks.one_of("dtype", self.dtype, DTYPES)
        checks.at_least("rows_per_shard", self.rows_per_shard, 1)
        checks.boolean("overwrite", self.overwrite)
        checks.boolean("ray_dashboard", self.ray_dashboard)


@dataclass(frozen=True)
class EncodeResult:
    out: Path                  # the published vector directory
    manifest: dict             # what its manifest.json says
    up_to_date: bool = False   # the output was already complete for this corpus and config: nothing ran


def encode_corpus(job: EncodeJob) -> EncodeResult:
    """Encode the ids of ``job.corpus`` not yet in ``job.out`` and publish the vector directory.

    SIGTERM and Ctrl-C (in the main thread) raise ``signals.Interrupted`` saying what was kept:
    finished shards stay for the same command to resume from, nothing is published."""
    with stop_on_signals():
        return _encode(job)


def _encode(job: EncodeJob) -> EncodeResult:
    spec = job.spec
    corpus = open_job_corpus(job)
    # Taken before any row is read and compared before publishing: a file replaced during the run
    # (same row count or not) must not be recorded as the corpus these vectors were made from.
    fingerprint = corpus.fingerprint()
    out = check_output(job.out or f"{corpus.stem}.{_pooling_name(spec)}.vectors",
                       {"corpus": job.corpus, "model": local_model_dir(spec.model)})
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a directory")
    exported, resolved = prepare_resolved(spec)
    max_length = resolved.max_length
    record = spec_record(spec, max_length, exported.recipe)
    key = corpus_run_key(encoder_identity(record, exported.info["content_hash"]), job.dtype, corpus)
    with run_lock(out):
        base = None if job.overwrite else published_manifest(out)
        if base is not None:
            changed = differences(run_key_of(base), key)
            if changed:
                raise BadInput(f"output {out} was encoded with another config ({changed}); "
                               "pass overwrite=true to rebuild it", fields=("overwrite",))
            if base.get("source", {}).get("fingerprint") == fingerprint:
                # "Complete" only if what the manifest lists is still there, unchanged.
                for shard in base["shards"]:
                    verify_shard(out, shard, checksum=True)
                log.info("%s is already complete for this corpus and config: nothing to do", out)
                return EncodeResult(out, base, up_to_date=True)
        corpus_hashes = _check_corpus(corpus, job.empty_text)
        state = open_staging(out, key, base)
        writer = ShardWriter(state.staging, exported.dim, dtype=job.dtype, rows_per_shard=job.rows_per_shard,
                             first_shard=state.next_shard)
        try:
            known = _known_ids(state, corpus)
            already = int(np.isin(id_hashes(known), corpus_hashes).sum()) if len(known) else 0
            _log_reuse(state, out, len(known), already)
            config = MapperConfig(str(exported.path), resolved.pooling, spec.normalize, max_length,
                                  BatchPlan(batch_size=job.batch_size, threads=job.threads),
                                  corpus.text_column, corpus.id_column, job.empty_text, resolved.prompt)
            started = datetime.now(timezone.utc)
            encoded = truncated = 0
            address = job.ray_address or (os.environ.get("RAY_ADDRESS") if job.runner == "auto" else None)
            runner, why = choose_runner(job.runner, corpus.rows - already, address)
            log.info("runner: %s (%s)", runner, why)
            with Progress(corpus.rows - already, "rows encoded") as progress:
                # closing(): on an error or a signal the runner stops here (an embedded Ray shut down)
                # before the shards are kept, not whenever the generator is collected.
                tables = closing(run_encoder(runner, corpus, config, window=job.window, skip_ids=known,
                                             ray=RayOptions(address, job.workers, job.ray_dashboard)))
                with tables:
                    for table in tables.thing:
                        flags = table.column("truncated").to_numpy(zero_copy_only=False)
                        writer.write(table.column("id"), vectors_from_column(table.column("vector")), flags)
                        encoded += table.num_rows
                        truncated += int(flags.sum())
                        progress.update(table.num_rows)
                writer.flush()
                seconds = progress.seconds
            if corpus.fingerprint() != fingerprint:
                shutil.rmtree(state.staging, ignore_errors=True)   # rows of two versions of the corpus: dropped
                raise BadInput(f"corpus {job.corpus} changed while it was being encoded (a file was replaced, "
                               "rewritten or touched); nothing was published: run the command again")
            last_run = {"runner": runner, "encoded_rows": encoded, "reused_rows": len(known),
                        "reused_shards": len(state.reused) + len(base["shards"] if base else []),
                        "skipped_rows": corpus.rows - already - encoded, "truncated_rows": truncated,
                        "removed_ids": len(known) - already, "started_at": started.isoformat(timespec="seconds"),
                        "seconds": round(seconds, 3)}
            shards = (base["shards"] if base else []) + state.reused + writer.shards
            fields = _manifest_fields(job, record, exported.info, corpus, fingerprint, last_run, shards,
                                      created=(base or {}).get("created_at", last_run["started_at"]))
            manifest = finish(state, fields, exported.dim, job.dtype, writer.shards)
        except Interrupted as stop:
            stop.detail = abandon(state, quiet=True)
            raise
        except BaseException:
            abandon(state)
            raise
    log.info("%s: %s rows encoded, %s reused (%d shard(s)), %s skipped (blank), %s truncated to %d tokens",
             out, f"{encoded:,}", f"{len(known):,}", last_run["reused_shards"], f"{last_run['skipped_rows']:,}",
             f"{truncated:,}", max_length)
    return EncodeResult(out, manifest)


def open_job_corpus(job: EncodeJob) -> Corpus:
    """The job's corpus, its columns resolved (``_id`` for ``id``, a BEIR folder's title)."""
    return open_corpus(job.corpus, text_column=job.text_column, id_column=job.id_column,
                       title_column=job.title_column, file_format=job.format)


def corpus_run_key(identity: dict, dtype: str, corpus: Corpus) -> dict:
    """The run key of vectors of ``corpus``: keyed on the columns actually read."""
    return run_key(identity, dtype, corpus.text_column, corpus.id_column, corpus.title_column)


def _pooling_name(spec: EncoderSpec) -> str:
    """The pooling a default output is named after: the model's own for "model" when the model is a
    local directory (read without exporting, so a bad output is refused first), else as given."""
    if spec.pooling != MODEL_POOLING:
        return spec.pooling
    local = local_model_dir(spec.model)
    try:
        return read_recipe(local).pooling if local is not None and local.is_dir() else spec.pooling
    except BadInput:
        return spec.pooling  # the export refuses it, with its own message


def _check_corpus(corpus: Corpus, empty_text: str) -> np.ndarray:
    """Whole-corpus checks before anything is encoded; returns the sorted hashes of its ids."""
    hashes = corpus.check_unique_ids()
    if empty_text == "error":
        bad, examples = corpus.find_bad_rows()
        if bad:
            raise BadInput(f"{bad} row(s) have a null or blank text (ids: {', '.join(map(repr, examples))}"
                           f"{', ...' if bad > len(examples) else ''}); fix them or pass empty_text=skip",
                           fields=("empty_text",))
    return hashes


def _manifest_fields(job: EncodeJob, record: dict, export_info: dict, corpus: Corpus,
                     fingerprint: str, last_run: dict, shards: list[dict], created: str) -> dict:
    """What the manifest records besides dim, dtype, rows and shards (vectors.complete_manifest)."""
    return {
        "embedpipe_version": __version__,
        "created_at": created,
        "encoder": record,
        "model": {"name": export_info["model_name"], "path": model_path_of(job.spec, export_info),
                  "content_hash": export_info["content_hash"], "onnx_file": export_info["onnx_file"]},
        "pooling": record["pooling"],
        "model_pooling": ModelRecipe.from_dict(export_info.get("recipe")).pooling,
        "normalize": record["normalize"],
        "max_length": record["max_length"],
        "source": {"path": corpus.location, "fingerprint": fingerprint, "rows": corpus.rows,
                   "format": corpus.format, "text_column": corpus.text_column, "id_column": corpus.id_column,
                   **({"title_column": corpus.title_column} if corpus.title_column else {})},
        "empty_text": job.empty_text,
        "skipped_rows": last_run["skipped_rows"],
        "truncated_rows": sum(s.get("truncated_rows", 0) for s in shards),
        "last_run": last_run,
        "runner": last_run["runner"],
        "runner_requested": job.runner,
        "workers": job.workers,
        "threads": job.threads,
        "seconds": last_run["seconds"],
        "rows_per_second": round(last_run["encoded_rows"] / max(last_run["seconds"], 1e-9), 1),
    }


def _known_ids(state, corpus: Corpus) -> pa.Array:
    """Ids already encoded: in the published output (checksums verified) and in finished staged shards."""
    chunks = (read_ids(state.out, state.base["shards"], verify=True) if state.base else [])
    chunks += read_ids(state.staging, state.reused, verify=False)  # hashed just now
    for chunk in chunks:
        if chunk.type != corpus.id_type:
            raise BadInput(f"ids in {corpus.location} are {corpus.id_type}, the ids already encoded in "
                           f"{state.out} are {chunk.type}; pass overwrite=true to rebuild it", fields=("overwrite",))
    return pa.concat_arrays(chunks) if chunks else pa.array([], corpus.id_type)


def _log_reuse(state, out: Path, known: int, already: int) -> None:
    if state.reused:
        log.info("resuming: %d shard(s) (%s rows) finished by an interrupted run are reused",
                 len(state.reused), f"{sum(s['rows'] for s in state.reused):,}")
    if state.base:
        log.info("%s holds %s rows in %d shard(s); encoding only ids it lacks", out,
                 f"{state.base['rows']:,}", len(state.base["shards"]))
    if known > already:
        log.warning("%s id(s) in %s are no longer in the corpus; their vectors stay (overwrite rebuilds)",
                    f"{known - already:,}", out)
