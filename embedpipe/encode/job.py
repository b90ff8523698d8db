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
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from .. import __version__, checks
from ..errors import BadInput, ConfigError
from ..formats.codes import PACKED, RESCORE_DTYPES
from ..formats.corpus import Corpus, open_corpus
from ..formats.readers import FORMATS
from ..formats.vectors import (
    DTYPES,
    differences,
    encoder_identity,
    published_manifest,
    read_ids,
    run_key,
    run_key_of,
    verify_shard,
)
from ..fsio import check_output, local_path
from ..model.recipe import ModelRecipe, read_recipe
from ..model.resolve import local_model_dir
from ..progress import Progress
from ..signals import Interrupted, signal_received, stop_on_signals
from ..storage.store import Store
from .batching import BatchPlan
from .chunking import check_chunk_fields, check_chunking, chunking_record, documents_of
from .compact import codec_for_job, kept_rescore_dtype, rescore_key
from .devices import placement_record
from .encoder import EncoderSpec, model_path_of, placement_of, prepare_resolved, spec_to_record
from .pieces import plan_pieces
from .pooling import MODEL_POOLING
from .resume import abandon, abandon_all, finish, open_staging, output_lock
from .rows import EMPTY_TEXT_POLICIES, WorkerConfig
from .runners import RUNNERS, RayRunnerOptions, choose_runner, run_encoder

MIN_GPU_SHARE = 0.01     # the smallest share of a GPU an encoder actor may ask for
PIECES_FOR_BALANCE = 32  # a small corpus on Ray is cut into this many pieces, so no actor waits on one big one

log = logging.getLogger("embedpipe.encode")


@dataclass
class EncodeJob:
    corpus: str                          # a file, directory, glob or URL: parquet, JSON Lines, CSV, save_to_disk, BEIR
    out: str | None = None               # vector directory, path or URL (s3://...); None = CORPUS_STEM.POOLING.vectors
    spec: EncoderSpec = field(default_factory=EncoderSpec)
    text_column: str = "text"
    id_column: str = "id"                # without an "id" column, BEIR's "_id" is taken
    title_column: str | None = None      # joined before the text with a space, as BEIR does (a BEIR folder: "title")
    format: str | None = checks.choice(None, FORMATS, optional=True)  # parquet, jsonl, csv, arrow; None = by name
    # "ray" (actor pool), "local" (this process) or "auto" (choose_runner: Ray for a named cluster or a
    # large corpus, else local)
    runner: str = checks.choice("auto", RUNNERS)
    ray_address: str | None = None       # join this cluster; None = $RAY_ADDRESS for auto, else embedded local Ray
    workers: int | None = None           # encoder actors; None = one per `threads` CPUs
    threads: int | None = None           # onnxruntime threads per worker; None = local: all cores, Ray: 1-4
    inflight: int | None = None          # onnxruntime calls in flight per worker; None = one per thread, at most 2
    batch_size: int = 128                # texts per onnxruntime call (a token budget caps it too)
    window: int = 8192                   # rows read, sorted by length and encoded together
    # null/blank text: "error" stops before encoding anything, "skip" drops those rows
    empty_text: str = checks.choice("error", EMPTY_TEXT_POLICIES)
    # vector dtype on disk: float32, float16, int8/uint8 (per-dimension ranges), binary/ubinary (sign bits)
    dtype: str = checks.choice("float32", DTYPES)
    truncate_dim: int | None = None      # Matryoshka: keep the first N dimensions, then normalize; None = all
    # int8/uint8 calibration ranges: an int8/uint8 vector directory or a .npy (2, dim); None = learned
    ranges: str | None = None
    calibration_rows: int = 10_000       # int8/uint8 without ranges: corpus rows whose vectors give the ranges
    # binary/ubinary: also keep the vectors in this dtype beside the bits (column "rescore"), for the index to rescore
    rescore_dtype: str | None = checks.choice(None, RESCORE_DTYPES, optional=True)
    rows_per_shard: int = 100_000
    overwrite: bool = False              # rebuild from scratch (the old output stays until the new one is complete)
    ray_dashboard: bool = False          # embedded local Ray only: start its dashboard (on 127.0.0.1)
    gpus_per_actor: float = 0.0          # Ray runner: GPUs per encoder actor (fractional: actors share one); 0 = CPUs
    # cut each text into windows of at most this many tokens (prompt and special tokens included), one
    # row per window (encode/chunking.py); None = one row per text, truncated at max_length
    chunk_tokens: int | None = None
    chunk_overlap: int = 0               # tokens a window shares with the one before (needs chunk_tokens)

    def __post_init__(self):
        checks.path("corpus", self.corpus)
        checks.path("out", self.out, optional=True)
        if not isinstance(self.spec, EncoderSpec):
            raise ConfigError("spec", f"must be an EncoderSpec, got {type(self.spec).__name__}")
        checks.distinct_columns(("text_column", self.text_column), ("id_column", self.id_column))
        if self.title_column is not None:
            checks.distinct_columns(("title_column", self.title_column), ("text_column", self.text_column))
            checks.distinct_columns(("title_column", self.title_column), ("id_column", self.id_column))
        checks.declared_choices(self)
        checks.text("ray_address", self.ray_address, optional=True)
        checks.at_least("workers", self.workers, 1, optional=True)
        checks.at_least("threads", self.threads, 1, optional=True)
        checks.at_least("inflight", self.inflight, 1, optional=True)
        checks.at_least("batch_size", self.batch_size, 1)
        checks.at_least("window", self.window, 1)
        checks.at_least("rows_per_shard", self.rows_per_shard, 1)
        checks.at_least("truncate_dim", self.truncate_dim, 8, optional=True)
        checks.path("ranges", self.ranges, optional=True)
        checks.at_least("calibration_rows", self.calibration_rows, 1)
        if self.rescore_dtype is not None and self.dtype not in PACKED:
            raise ConfigError("rescore_dtype", f"keeps rescoring vectors beside binary codes; dtype {self.dtype} "
                              "vectors are their own")
        checks.boolean("overwrite", self.overwrite)
        checks.boolean("ray_dashboard", self.ray_dashboard)
        checks.number_in("gpus_per_actor", self.gpus_per_actor, 0.0, 64.0)
        if 0 < self.gpus_per_actor < MIN_GPU_SHARE:   # 1e-6 would start a million actors on one GPU
            raise ConfigError("gpus_per_actor", f"must be 0 (CPU actors) or at least {MIN_GPU_SHARE} "
                                                f"(at most {round(1 / MIN_GPU_SHARE)} actors a GPU), "
                                                f"got {self.gpus_per_actor!r}")
        if self.gpus_per_actor and self.runner == "local":
            raise ConfigError("gpus_per_actor", "is for the Ray runner's actors; in this process use device cuda")
        check_chunk_fields(self.chunk_tokens, self.chunk_overlap)


@dataclass(frozen=True)
class EncodeResult:
    out: Path | str            # the published vector directory (a local path, or the URL it was given)
    manifest: dict             # what its manifest.json says
    up_to_date: bool = False   # the output was already complete for this corpus and config: nothing ran


def encode_corpus(job: EncodeJob) -> EncodeResult:
    """Encode the rows of ``job.corpus`` not yet in ``job.out`` and publish the vector directory.

    Workers write their shards straight to OUT's filesystem (a local or shared path, or a URL such
    as s3://bucket/vectors) and return only receipts; the manifest, written last, commits them.

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
    location = job.out or f"{corpus.stem}.{_pooling_name(spec)}.vectors"
    shown: Path | str = location
    if local_path(location) is not None:     # a path, or a file:// URL naming one
        location = str(local_path(location))
        shown = check_output(location, {"corpus": job.corpus, "model": local_model_dir(spec.model)})
        if shown.exists() and not shown.is_dir():
            raise BadInput(f"output {shown} exists and is not a directory")
        location = str(shown.absolute())   # workers elsewhere (Ray) do not share this working directory
    out = Store.at(location)
    exported, resolved = prepare_resolved(spec, remote_gpus=job.gpus_per_actor)
    max_length = resolved.max_length
    record = job_record(job, max_length, exported.recipe)
    if job.chunk_tokens is not None:   # refused here, before any output or worker exists
        check_chunking(exported.path, job.chunk_tokens, job.chunk_overlap, max_length, resolved.prompt)
    key = {**corpus_run_key(encoder_identity(record, exported.info["content_hash"]), job.dtype, corpus),
           **rescore_key(job.rescore_dtype)}
    with output_lock(location):
        base = None if job.overwrite else published_manifest(out)
        if base is not None:
            changed = differences({**run_key_of(base), **rescore_key(kept_rescore_dtype(base))}, key)
            if changed:
                raise BadInput(f"output {shown} was encoded with another config ({changed}); "
                               "pass overwrite=true to rebuild it", fields=("overwrite",))
            if base.get("source", {}).get("fingerprint") == fingerprint:
                # "Complete" only if what the manifest lists is still there, unchanged.
                for shard in base["shards"]:
                    verify_shard(out, shard, checksum=True)
                log.info("%s is already complete for this corpus and config: nothing to do", shown)
                return EncodeResult(shown, base, up_to_date=True)
        _check_corpus(corpus, job.empty_text)
        coverage = _coverage(corpus, base)
        known = _known_ids(out, coverage.known_shards, corpus, "doc_id" if job.chunk_tokens is not None else "id")
        todo_rows = sum(corpus.file_rows[f] for f in coverage.files)
        address = job.ray_address or (os.environ.get("RAY_ADDRESS") if job.runner == "auto" else None)
        runner, why = choose_runner(job.runner, todo_rows, address)
        if job.gpus_per_actor and runner == "local":   # GPUs were asked of Ray's actors: auto means Ray
            runner, why = "ray", f"--gpus-per-actor {job.gpus_per_actor:g}"
        log.info("runner: %s (%s)", runner, why)
        state = open_staging(out, key, base, fingerprint, _piece_rows(runner, job.rows_per_shard, todo_rows))
        pieces = plan_pieces(corpus, coverage.files, state.piece_rows, state.next_shard, coverage.changed)
        planned = {p.number: p.source() for p in pieces}
        done = [r for n, r in state.done.items() if planned.get(n) == r.get("source")]
        finished = {r["number"] for r in done}
        todo = [p for p in pieces if p.number not in finished]
        _log_reuse(state, done, shown, base)
        config = WorkerConfig(str(exported.path), resolved.pooling, spec.normalize, max_length,
                              BatchPlan(batch_size=job.batch_size, threads=job.threads, inflight=job.inflight),
                              corpus.text_column, corpus.id_column, job.empty_text, resolved.prompt,
                              placement=placement_of(resolved), chunk_tokens=job.chunk_tokens,
                              chunk_overlap=job.chunk_overlap)
        config, compact = codec_for_job(job, config, corpus, base, record, exported)
        started = datetime.now(UTC)
        receipts = list(done)
        try:
            with Progress(sum(p.rows for p in todo), "rows encoded") as progress:
                by_window = progress.update if runner == "local" else None  # Ray reports whole pieces
                # closing(): on an error or a signal the runner stops here (actors killed, an embedded
                # Ray shut down) before the finished shards are counted and kept.
                with closing(run_encoder(runner, corpus, config, todo, state.staging.location, window=job.window,
                                         known_ids=known, dtype=job.dtype, on_rows=by_window,
                                         ray=RayRunnerOptions(address, job.workers, job.ray_dashboard,
                                                                             job.gpus_per_actor))) as finished:
                    for receipt in finished:
                        receipts.append(receipt)
                        if by_window is None:
                            progress.update(receipt["source"]["stop"] - receipt["source"]["start"])
                seconds = progress.seconds
            if corpus.fingerprint() != fingerprint:
                abandon_all(state)                   # rows of two versions of the corpus: dropped
                raise BadInput(f"corpus {job.corpus} changed while it was being encoded (a file was replaced, "
                               "rewritten or touched); nothing was published: run the command again")
            new = receipts[len(done):]
            encoded = sum(r["rows"] for r in new)
            reused_rows = (base["rows"] if base else 0) + sum(r["rows"] for r in done)
            already = coverage.unchanged_rows + sum(r["skipped_known"] for r in receipts)
            documents = sum(map(documents_of, new))   # corpus rows behind the rows (chunks) written
            last_run = {"runner": runner, **placement_record(placement_of(resolved)),
                        "encoded_rows": encoded, "reused_rows": reused_rows,
                        "reused_shards": len([r for r in done if r["rows"]]) + len(base["shards"] if base else []),
                        "skipped_rows": corpus.rows - already - documents - sum(map(documents_of, done)),
                        "truncated_rows": sum(r["truncated_rows"] for r in new),
                        "removed_ids": (len(known) if known is not None else 0)
                        - sum(r["skipped_known"] for r in receipts),
                        "nodes": sorted({r["node_id"] for r in new if r.get("node_id")}),
                        "started_at": started.isoformat(timespec="seconds"), "seconds": round(seconds, 3)}
            if last_run["removed_ids"] > 0:
                log.warning("%s id(s) in %s are no longer in the corpus; their vectors stay (overwrite rebuilds)",
                            f"{last_run['removed_ids']:,}", shown)
            fields = _manifest_fields(job, record, exported.info, corpus, fingerprint, last_run,
                                      (base["shards"] if base else []) + receipts,
                                      created=(base or {}).get("created_at", last_run["started_at"]))
            if compact is not None:
                fields["compact"] = compact
            manifest = finish(state, fields, job.truncate_dim or exported.dim, job.dtype, receipts)
        except Interrupted as stop:
            stop.detail = abandon(state, quiet=True)
            raise
        except BadInput:
            abandon_all(state)   # the corpus holds a row it refuses: a rerun would stop there again
            raise
        except BaseException:
            signum = signal_received()
            if signum is None:
                abandon(state)
                raise
            # A signal came and a library (Ray) turned its KeyboardInterrupt into an error of its own.
            raise Interrupted(signum, abandon(state, quiet=True)) from None
    log.info("%s: %s rows encoded, %s reused (%d shard(s)), %s skipped (blank), %s truncated to %d tokens",
             shown, f"{encoded:,}", f"{reused_rows:,}", last_run["reused_shards"], f"{last_run['skipped_rows']:,}",
             f"{last_run['truncated_rows']:,}", max_length)
    return EncodeResult(shown, manifest)


def _piece_rows(runner: str, rows_per_shard: int, todo_rows: int) -> int:
    """Rows per piece (one task, one shard): ``rows_per_shard``, cut smaller on Ray for a corpus too
    small to give every actor several pieces. It depends on the corpus only, never on the cluster,
    so a rerun on fewer nodes cuts the same pieces (and a rerun keeps the first run's size anyway)."""
    if runner == "local":
        return rows_per_shard
    return max(1, min(rows_per_shard, -(-todo_rows // PIECES_FOR_BALANCE)))


@dataclass(frozen=True)
class Coverage:
    files: list[int]            # corpus files (by number) with rows to encode
    changed: set[int]           # those of them the published output holds rows of: filter by known ids
    known_shards: list[dict]    # published shards whose ids those files may hold again
    unchanged_rows: int         # rows the published output holds of files that did not change


def _coverage(corpus: Corpus, base: dict | None) -> Coverage:
    """Which corpus files still need encoding against the published output ``base``: a file it
    recorded with the same size, modification time and rows is done; any other file is encoded,
    leaving out only ids that published shards cut from changed or vanished files hold."""
    if base is None:
        return Coverage(list(range(len(corpus.files))), set(), [], 0)
    recorded = {f["path"]: f for f in base.get("source", {}).get("files", [])}
    signatures = corpus.file_signatures()
    unchanged = {path for path, sig in zip(corpus.files, signatures) if recorded.get(path) == sig}
    files = [i for i, path in enumerate(corpus.files) if path not in unchanged]
    known_shards = [s for s in base["shards"] if (s.get("source") or {}).get("file") not in unchanged]
    unchanged_rows = sum(documents_of(s) for s in base["shards"] if (s.get("source") or {}).get("file") in unchanged)
    return Coverage(files, set(files) if known_shards else set(), known_shards, unchanged_rows)


def job_record(job: EncodeJob, max_length: int, recipe: ModelRecipe | None = None) -> dict:
    """The manifest's 'encoder' record of ``job``: its spec's, plus truncate_dim and the chunking when set (part of the
    identity: queries, appends and indexes must match it)."""
    record = {**spec_to_record(job.spec, max_length, recipe), **chunking_record(job.chunk_tokens, job.chunk_overlap)}
    if job.truncate_dim is not None:
        record["truncate_dim"] = job.truncate_dim
    return record


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


def _check_corpus(corpus: Corpus, empty_text: str) -> None:
    """Whole-corpus checks before anything is encoded (ids unique and present, no blank text)."""
    corpus.check_unique_ids()
    if empty_text == "error":
        bad, examples = corpus.find_bad_rows()
        if bad:
            raise BadInput(f"{bad} row(s) have a null or blank text (ids: {', '.join(map(repr, examples))}"
                           f"{', ...' if bad > len(examples) else ''}); fix them or pass empty_text=skip",
                           fields=("empty_text",))


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
                   **({"title_column": corpus.title_column} if corpus.title_column else {}),
                   "files": corpus.file_signatures()},
        "empty_text": job.empty_text,
        "skipped_rows": last_run["skipped_rows"],
        "truncated_rows": sum(s.get("truncated_rows", 0) for s in shards if s.get("rows")),
        "last_run": last_run,
        "runner": last_run["runner"],
        "runner_requested": job.runner,
        "workers": job.workers,
        "threads": job.threads,
        "seconds": last_run["seconds"],
        "rows_per_second": round(last_run["encoded_rows"] / max(last_run["seconds"], 1e-9), 1),
    }


def _known_ids(out: Store, shards: list[dict], corpus: Corpus, column: str = "id") -> pa.Array | None:
    """The corpus ids of published ``shards`` (checksums verified; ``column`` "doc_id" for chunk
    rows), which changed files may hold again; None when there are none (a fresh output, or only new files)."""
    if not shards:
        return None
    chunks = read_ids(out, shards, verify=True, column=column)
    for chunk in chunks:
        if chunk.type != corpus.id_type:
            raise BadInput(f"ids in {corpus.location} are {corpus.id_type}, the ids already encoded in "
                           f"{out.location} are {chunk.type}; pass overwrite=true to rebuild it", fields=("overwrite",))
    return pa.concat_arrays(chunks) if chunks else None


def _log_reuse(state, done: list[dict], out: str, base: dict | None) -> None:
    if done:
        log.info("resuming: %d shard(s) (%s rows) finished by an interrupted run are reused",
                 len(done), f"{sum(r['rows'] for r in done):,}")
    if base:
        log.info("%s holds %s rows in %d shard(s); encoding only ids it lacks", out,
                 f"{base['rows']:,}", len(base["shards"]))
