"""What an encode job needs for compact vectors: the truncate_dim checked against the model, the
int8/uint8 calibration ranges (an earlier output's, a file's, or learned from a sample of the
corpus's own vectors), and the manifest's record of both.

    >>> check_truncate_dim(128, 384, [768, 512, 256, 128, 64], "m")   # declared: no warning
    >>> check_truncate_dim(100, 384, [256, 128, 64], "m")
    Traceback (most recent call last):
    ...
    embedpipe.errors.BadInput: truncate_dim 100 is not one of the Matryoshka dimensions model m declares (256, 128, 64)

Ranges are learned once, for the first encode of an output, and recorded in its manifest; every later
encode of that output (new rows, resumed runs) reuses them, so all its codes mean the same thing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..formats.codes import QUANTIZED, as_ranges, check_dim, ranges_from_record, ranges_of, ranges_record
from ..formats.corpus import Corpus
from ..formats.vectors import MANIFEST, encoder_identity, identity_of, read_manifest, vectors_from_column
from .codec import VectorCodec, truncate
from .encoder import model_path_of
from .rows import RowsToVectors, WorkerConfig

log = logging.getLogger("embedpipe.encode")

CALIBRATION_SPREAD = 16   # the sample is read as this many row ranges spread over the corpus
# sentence-transformers' model card lists the MatryoshkaLoss parameters as JSON
_CARD_DIMS = re.compile(r'"matryoshka_dims"\s*:\s*\[([0-9,\s]+)\]')


def matryoshka_dims(model_dir: Path) -> list[int] | None:
    """The dimensions a sentence-transformers model says it was trained to be cut to: its config's
    ``matryoshka_dims`` or ``truncate_dim``, or the MatryoshkaLoss parameters in its model card."""
    declared: list[int] = []
    config = model_dir / "config_sentence_transformers.json"
    if config.is_file():
        try:
            values = json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            values = {}
        if isinstance(values, dict):
            dims = values.get("matryoshka_dims")
            declared += [int(d) for d in dims if isinstance(d, int)] if isinstance(dims, list) else []
            if isinstance(values.get("truncate_dim"), int):
                declared.append(values["truncate_dim"])
    card = model_dir / "README.md"
    if card.is_file():
        for match in _CARD_DIMS.finditer(card.read_text(encoding="utf-8", errors="replace")):
            declared += [int(d) for d in match.group(1).split(",") if d.strip()]
    return sorted(set(declared), reverse=True) or None


def check_truncate_dim(truncate_dim: int | None, dim: int, declared: list[int] | None, model: str) -> None:
    """Refuse a truncate_dim wider than the model or not among the dimensions it declares; warn
    (one line) when the model declares none: it was not trained to be cut, quality may drop."""
    if truncate_dim is None:
        return
    if truncate_dim > dim:
        raise BadInput(f"truncate_dim {truncate_dim} is more than model {model}'s dimension {dim}",
                       fields=("truncate_dim",))
    if declared:
        if truncate_dim not in declared:
            raise BadInput(f"truncate_dim {truncate_dim} is not one of the Matryoshka dimensions model {model} "
                           f"declares ({', '.join(map(str, declared))})", fields=("truncate_dim",))
    elif truncate_dim < dim:
        log.warning("warning: model %s declares no Matryoshka dimensions; its vectors cut to %d of %d dimensions "
                    "may rank noticeably worse (measure it: embedpipe evaluate)", model, truncate_dim, dim)


def ranges_from_file(path: str | os.PathLike, identity: dict, dim: int) -> tuple[np.ndarray, str]:
    """Ranges given by the user: an embedpipe int8/uint8 vector directory (its recorded ranges; its
    encoder must be this one) or a ``.npy`` file of shape (2, dim). -> (ranges, where they came from)."""
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        ranges = ranges_from_record((manifest.get("compact") or {}).get("ranges"))
        if ranges is None:
            raise BadInput(f"{path} records no calibration ranges (it is not an int8 or uint8 output)",
                           fields=("ranges",))
        theirs = identity_of(manifest)
        changed = sorted(k for k in set(theirs) | set(identity) if theirs.get(k) != identity.get(k))
        if changed:
            raise BadInput(f"the calibration ranges in {path} were learned from another encoder "
                           f"({', '.join(changed)} differ); ranges only fit vectors of the same model and settings",
                           fields=("ranges",))
        where = str(path / MANIFEST)
    elif path.is_file():
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise BadInput(f"calibration ranges {path} are not a .npy file (nor an int8 vector directory)",
                               fields=("ranges",))
        try:
            ranges = as_ranges(np.load(path, allow_pickle=False))
        except (ValueError, OSError) as e:
            raise BadInput(f"cannot read calibration ranges from {path}: {str(e).splitlines()[0]}",
                           fields=("ranges",)) from None
        where = str(path)
    else:
        raise BadInput(f"calibration ranges {path} do not exist", fields=("ranges",))
    if ranges.shape[1] != dim:
        raise BadInput(f"the calibration ranges in {path} are for dimension {ranges.shape[1]}; these vectors "
                       f"have {dim} (ranges from another model, or another truncate_dim?)", fields=("ranges",))
    return ranges, where


def sample_batches(corpus: Corpus, rows: int, batch_rows: int = 1024):
    """About ``rows`` corpus rows as (id, text) batches, read as CALIBRATION_SPREAD ranges spread
    evenly over the corpus (a corpus sorted by topic or length still gives a fair sample)."""
    total = corpus.rows
    spans = [(0, total)] if total <= rows else [
        (int(s), int(s) + -(-rows // CALIBRATION_SPREAD))
        for s in np.linspace(0, total - -(-rows // CALIBRATION_SPREAD), CALIBRATION_SPREAD)]
    bounds = np.cumsum([0, *corpus.file_rows])
    for start, stop in spans:
        for f, path in enumerate(corpus.files):
            lo, hi = max(start, bounds[f]), min(stop, bounds[f + 1])
            if lo < hi:
                yield from corpus.read_rows(path, batch_rows, int(lo - bounds[f]), int(hi - bounds[f]))


def learn_ranges(corpus: Corpus, config: WorkerConfig, rows: int, truncate_dim: int | None) -> tuple[np.ndarray, int]:
    """Encode a spread sample of the corpus (blank texts skipped) and take each dimension's
    [min; max] of the (truncated) vectors. -> (ranges (2, dim), rows sampled)."""
    to_vectors = RowsToVectors(replace(config, empty_text="skip", codec=None))
    vectors = []
    for batch in sample_batches(corpus, rows):
        table = to_vectors(batch)
        if table.num_rows:
            vectors.append(vectors_from_column(table.column("vector")))
    if not vectors:
        raise BadInput(f"corpus {corpus.location} has no text to learn int8 calibration ranges from")
    sample = truncate(np.concatenate(vectors), truncate_dim, config.normalize)
    if len(sample) < 100:
        log.warning("warning: int8 calibration ranges learned from only %d vector(s); pass ranges from a "
                    "larger encode for stable codes", len(sample))
    return ranges_of(sample), len(sample)


def rescore_key(rescore_dtype: str | None) -> dict:
    """What the run key adds for rescoring vectors kept beside bits (nothing without them, so keys of
    outputs without them read as before)."""
    return {"rescore_dtype": rescore_dtype} if rescore_dtype else {}


def kept_rescore_dtype(manifest: dict) -> str | None:
    return (manifest.get("compact") or {}).get("rescore_dtype")


def job_codec(dtype: str, truncate_dim: int | None, normalize: bool, dim: int, *, base: dict | None,
              ranges_path: str | None, identity: dict, learn,
              rescore_dtype: str | None = None) -> tuple[VectorCodec, dict | None]:
    """The codec an encode writes with and the manifest's ``compact`` record (None for plain floats).
    Ranges (for int8/uint8 codes or rescoring vectors): the published output's (``base``), which a ranges
    file must then equal; else the file's; else ``learn()`` -> (ranges, rows sampled)."""
    out_dim = truncate_dim or dim
    check_dim(out_dim, dtype)
    if dtype not in QUANTIZED and rescore_dtype not in QUANTIZED:
        if ranges_path is not None:
            raise BadInput(f"calibration ranges apply to int8 and uint8 vectors, not {dtype}", fields=("ranges",))
        codec = VectorCodec(dtype, truncate_dim, normalize, rescore_dtype=rescore_dtype)
        record = {"precision": dtype, "truncate_dim": truncate_dim, "rescore_dtype": rescore_dtype}
        return codec, (record if codec.changes_vectors else None)
    recorded = ranges_from_record(((base or {}).get("compact") or {}).get("ranges"))
    given = ranges_from_file(ranges_path, identity, out_dim) if ranges_path is not None else None
    if recorded is not None:
        if given is not None and not np.array_equal(given[0], recorded):
            raise BadInput(f"the calibration ranges in {given[1]} differ from those the output was encoded "
                           "with; every code of one output must share its ranges (overwrite=true to rebuild)",
                           fields=("ranges",))
        ranges, calibration = recorded, base["compact"].get("calibration")
    elif given is not None:
        ranges, calibration = given[0], {"from": given[1]}
    else:
        ranges, sampled = learn()
        calibration = {"from": "corpus sample", "rows": sampled}
        log.info("%s calibration ranges learned from %d vectors of the corpus", dtype, sampled)
    if ranges.shape[1] != out_dim:
        raise BadInput(f"calibration ranges are for dimension {ranges.shape[1]}, the vectors have {out_dim}",
                       fields=("ranges",))
    record = {"precision": dtype, "truncate_dim": truncate_dim, "ranges": ranges_record(ranges),
              "calibration": calibration, "rescore_dtype": rescore_dtype}
    return VectorCodec(dtype, truncate_dim, normalize, ranges, rescore_dtype), record


def codec_for_job(job, config: WorkerConfig, corpus: Corpus, base: dict | None, record: dict,
                  exported) -> tuple[WorkerConfig, dict | None]:
    """An EncodeJob's worker config with its codec, and the manifest's ``compact`` record."""
    model = exported.info.get("model_name") or "?"
    declared = matryoshka_dims(Path(model_path_of(job.spec, exported.info)))   # this model's files, not the export's
    check_truncate_dim(job.truncate_dim, exported.dim, declared, model)
    identity = encoder_identity(record, exported.info["content_hash"])
    codec, compact = job_codec(job.dtype, job.truncate_dim, config.normalize, exported.dim, base=base,
                               ranges_path=job.ranges, identity=identity,
                               learn=lambda: learn_ranges(corpus, config, job.calibration_rows, job.truncate_dim),
                               rescore_dtype=job.rescore_dtype)
    return replace(config, codec=codec if codec.changes_vectors else None), compact   # float32: as before
