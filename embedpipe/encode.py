"""Encode a whole corpus into a vector directory (the library behind ``embedpipe encode``).

    >>> result = encode_corpus(EncodeJob("corpus.parquet", spec=EncoderSpec(pooling="cls")))
    >>> result.out, result.manifest["rows"], result.manifest["dim"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .corpus import open_corpus
from .encoder import BatchPlan, EncoderSpec, prepare, spec_record
from .errors import EmbedpipeError
from .mapper import EMPTY_TEXT_POLICIES, MapperConfig
from .progress import Progress
from .runners import RUNNERS
from .vectors import MANIFEST, VectorWriter, check_output_dir, vectors_from_column


@dataclass
class EncodeJob:
    corpus: str                          # parquet file, directory of them, or a URL
    out: str | None = None               # vector directory; None = CORPUS_STEM.POOLING.vectors
    spec: EncoderSpec = field(default_factory=EncoderSpec)
    text_column: str = "text"
    id_column: str = "id"
    runner: str = "ray"                  # "ray" (actor pool) or "local" (this process)
    ray_address: str | None = None       # join this cluster; None = embedded local Ray
    workers: int | None = None           # encoder actors; None = one per `threads` CPUs
    threads: int | None = None           # onnxruntime threads per worker; None = local: all cores, Ray: 1-4
    batch_size: int = 128                # texts per onnxruntime call (a token budget caps it too)
    window: int = 8192                   # rows sorted by length together, per mapper call
    empty_text: str = "error"            # null/blank text: "error" stops before encoding, "skip" drops rows
    dtype: str = "float32"               # vector dtype on disk: float32 or float16
    rows_per_shard: int = 100_000
    overwrite: bool = False


@dataclass(frozen=True)
class EncodeResult:
    out: Path         # the published vector directory
    manifest: dict    # what its manifest.json says


def encode_corpus(job: EncodeJob) -> EncodeResult:
    """Encode ``job.corpus`` and publish the vector directory."""
    if job.runner not in RUNNERS:
        raise EmbedpipeError(f"unknown runner {job.runner!r}; choose one of: {', '.join(RUNNERS)}")
    if job.empty_text not in EMPTY_TEXT_POLICIES:
        raise EmbedpipeError(f"unknown empty-text policy {job.empty_text!r}; choose one of: "
                             f"{', '.join(EMPTY_TEXT_POLICIES)}")
    spec = job.spec.check()
    corpus = open_corpus(job.corpus, text_column=job.text_column, id_column=job.id_column)
    out = Path(job.out or f"{corpus.stem}.{spec.pooling}.vectors")
    check_output_dir(out, job.overwrite, MANIFEST)
    if job.empty_text == "error":
        bad, examples = corpus.find_bad_rows()
        if bad:
            raise EmbedpipeError(f"{bad} row(s) have a null or blank text (ids: {', '.join(map(repr, examples))}"
                                 f"{', ...' if bad > len(examples) else ''}); fix them or pass --empty-text skip")
    exported, max_length = prepare(spec)
    config = MapperConfig(str(exported.path), spec.pooling, spec.normalize, max_length,
                          BatchPlan(batch_size=job.batch_size, threads=job.threads),
                          job.text_column, job.id_column, job.empty_text)
    started = datetime.now(timezone.utc)
    with VectorWriter(out, exported.dim, dtype=job.dtype, rows_per_shard=job.rows_per_shard,
                      overwrite=job.overwrite) as writer, Progress(corpus.rows, "rows encoded") as progress:
        tables = RUNNERS[job.runner](corpus, config, window=job.window, workers=job.workers,
                                     address=job.ray_address)
        encoded = 0
        for table in tables:
            encoded += table.num_rows
            writer.write(table.column("id"), vectors_from_column(table.column("vector")))
            progress.update(table.num_rows)
        seconds = progress.seconds
        manifest = writer.publish({
            "embedpipe_version": __version__,
            "created_at": started.isoformat(timespec="seconds"),
            "encoder": spec_record(spec, max_length),
            "model": {"name": exported.info["model_name"], "path": exported.info["model_path"],
                      "content_hash": exported.info["content_hash"], "onnx_file": exported.info["onnx_file"]},
            "pooling": spec.pooling,
            "normalize": spec.normalize,
            "max_length": max_length,
            "source": {"path": corpus.location, "fingerprint": corpus.fingerprint(), "rows": corpus.rows,
                       "text_column": job.text_column, "id_column": job.id_column},
            "empty_text": job.empty_text,
            "skipped_rows": corpus.rows - encoded,
            "runner": job.runner,
            "workers": job.workers,
            "threads": job.threads,
            "seconds": round(seconds, 3),
            "rows_per_second": round(corpus.rows / max(seconds, 1e-9), 1),
        })
    return EncodeResult(out, manifest)
