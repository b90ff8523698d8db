"""The four stages, one class each: what it reads and writes, whether its output is complete for the
same inputs and config, and running it.

    >>> [stage.name for stage in STAGES.values()]
    ['encode', 'index', 'evaluate', 'classify']
    >>> STAGES["index"].status(spec, upstream_runs=False)          # doctest: +SKIP
    Status(action='skip', why='60 vectors, built from these vectors with this config')

    inputs(spec) / outputs(spec) -> {key: path}     what the stage reads and writes (spec keys)
    status(spec, upstream_runs) -> Status           cheap: reads manifests, never encodes
    run(spec, status) -> one line saying what was done

What each stage trusts to tell it is up to date (all written last and atomically by the stage):

    encode    manifest.json: the corpus fingerprint (files, sizes, rows) and the encoder's run key
    index     index.json: the IndexConfig and the sha256 of the vector manifest it was built from
    evaluate  the report: its config and the sha256 of index.json, queries and qrels
    classify  report.json: the job config and the content fingerprints of its input files
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbedpipeError
from ..formats.vectors import MANIFEST
from ..fsio import read_json
from ..storage.store import Store
from .schema import Spec

log = logging.getLogger("embedpipe.pipeline")


@dataclass(frozen=True)
class Status:
    action: str      # "skip" (up to date), "run", or "append" (index: add new shards)
    why: str

    @property
    def runs(self) -> bool:
        return self.action != "skip"


class Stage(ABC):
    """One step of a pipeline, run when its section is in the spec."""

    name: str
    upstream: tuple[str, ...] = ()   # stages whose output this one reads: when one of them runs, so does this one

    @abstractmethod
    def inputs(self, spec: Spec) -> dict[str, str | None]:
        """{key: path} of the files and directories the stage reads (None: not given)."""

    @abstractmethod
    def outputs(self, spec: Spec) -> dict[str, str | None]:
        """{key: path} of what the stage writes (None: not written)."""

    @abstractmethod
    def status(self, spec: Spec, upstream_runs: bool) -> Status:
        """Whether the output is complete for these inputs and this config; reads manifests only."""

    @abstractmethod
    def run(self, spec: Spec, status: Status) -> str:
        """Do the work ``status`` asked for; one line saying what was done."""


def _plain(data) -> dict:
    """A config as JSON would give it back (tuples become lists), for comparing with a stored one."""
    return json.loads(json.dumps(data, default=str))


def _changes(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _local_model(model: str | None) -> dict[str, str | None]:
    """A model the spec names as a local directory is an input; a hub id (or None: bundled) is not a path here."""
    return {"model": model} if model and Path(model).is_absolute() else {}


class EncodeStage(Stage):
    name = "encode"

    def inputs(self, spec: Spec) -> dict[str, str | None]:
        return {"corpus": spec.encode.corpus, **_local_model(spec.encode.spec.model)}

    def outputs(self, spec: Spec) -> dict[str, str | None]:
        return {"out": spec.encode.out}

    def status(self, spec: Spec, upstream_runs: bool) -> Status:
        from ..encode.job import open_job_corpus
        from ..formats.vectors import differences, run_key_of

        job = spec.encode
        manifest = Store.at(job.out).read_json(MANIFEST)   # a path or a URL
        if manifest is None:
            return Status("run", "no vectors yet")
        recorded = run_key_of(manifest)
        corpus = open_job_corpus(job)
        try:
            wanted = self.run_key(job, recorded.get("max_length"), corpus)
        except EmbedpipeError as e:  # the model cannot be found here: the run will say so
            return Status("run", f"cannot compare the encoder ({e})")
        changed = differences(recorded, wanted)
        if changed:
            return Status("run", f"config changed ({changed}): " +
                          ("rebuilds (overwrite: true)" if job.overwrite else "refused unless encode.overwrite: true"))
        source = manifest.get("source") or {}
        if source.get("fingerprint") != corpus.fingerprint():
            return Status("run", f"the corpus changed ({source.get('rows')} -> {corpus.rows} rows): "
                                 "encodes the ids not yet encoded")
        return Status("skip", f"{manifest.get('rows')} vectors, complete for this corpus and config")

    @staticmethod
    def run_key(job, recorded_max_length: int | None, corpus) -> dict:
        """The run key ``encode_corpus`` would write for ``job``, without exporting the model: the model's
        content hash comes from resolving it (hashes are memoized), and a spec without max_length takes the
        recorded one, which is the model's default when it was not set then either."""
        from ..encode.job import corpus_run_key, job_record
        from ..formats.vectors import encoder_identity
        from ..model.resolve import resolve_model

        identity = encoder_identity(job_record(job, job.spec.max_length or recorded_max_length),
                                    resolve_model(job.spec.model).content_hash)
        return corpus_run_key(identity, job.dtype, corpus)

    def run(self, spec: Spec, status: Status) -> str:
        from ..encode.job import encode_corpus

        job = spec.encode
        if job.runner in ("ray", "auto") and job.ray_address is None and os.environ.get("RAY_ADDRESS"):
            job = dataclasses.replace(job, ray_address=os.environ["RAY_ADDRESS"])  # as a Ray job: join its cluster
        manifest = encode_corpus(job).manifest
        last = manifest.get("last_run") or {}
        encoded = last.get("encoded_rows", manifest["rows"] - manifest.get("skipped_rows", 0))
        reused = last.get("reused_rows", 0)
        return f"{manifest['rows']} vectors ({encoded} encoded, {reused} reused) in {manifest.get('seconds', 0):.1f}s"


class IndexStage(Stage):
    name = "index"
    upstream = ("encode",)

    def inputs(self, spec: Spec) -> dict[str, str | None]:
        return {"vectors": str(spec.index.vectors), "tuning_vectors": spec.index.config.tuning_vectors}

    def outputs(self, spec: Spec) -> dict[str, str | None]:
        return {"out": str(spec.index.out)}

    def status(self, spec: Spec, upstream_runs: bool) -> Status:
        from ..formats.index_dir import INFO_FILE
        from ..index.append import new_shards

        stage = spec.index
        vectors = Store.at(stage.vectors)   # a path or a URL
        if not vectors.exists(MANIFEST):
            if upstream_runs:
                return Status("run", "after encode")
            return Status("run", f"no vectors at {stage.vectors} (the run will fail unless they appear)")
        info = read_json(stage.out / INFO_FILE)
        if info is None:
            return Status("run", "no index yet")
        # where the index is built (runner, cluster) is not what is built: changing it rebuilds nothing
        where = ("runner", "ray_address")
        wanted = {k: v for k, v in _plain(stage.config.record()).items() if k not in where}
        recorded = {k: v for k, v in (info.get("config") or {}).items() if k not in where}
        if recorded:   # a field added since the index was built (inverted_lists) counts as its default
            defaults = _plain(dataclasses.asdict(type(stage.config)()))
            recorded = {**{k: v for k, v in defaults.items() if k in wanted}, **recorded}
        if recorded != wanted:
            changed = _changes(recorded, wanted) if info.get("config") else "not recorded"
            return Status("run", f"index config changed ({changed}): rebuilds")
        if info.get("source_manifest_sha256") == vectors.sha256(MANIFEST) and not upstream_runs:
            return Status("skip", f"{info.get('n')} vectors, built from these vectors with this config")
        if upstream_runs:
            return Status("run", "after encode: appends new shards or rebuilds" if stage.append
                          else "after encode: rebuilds")
        if stage.append:
            manifest = vectors.read_json(MANIFEST) or {}
            try:
                shards = new_shards(info, manifest, stage.vectors)
            except EmbedpipeError as e:
                return Status("run", f"rebuilds: {e}")
            rows = sum(int(s["rows"]) for s in shards)
            return Status("append", f"adds {rows} vectors from {len(shards)} new shard(s)")
        return Status("run", "the vectors changed: rebuilds")

    def run(self, spec: Spec, status: Status) -> str:
        from ..formats.index_dir import INFO_FILE
        from ..index.append import append_index
        from ..index.build import build_index

        stage = spec.index
        note = ""
        if status.action == "append":
            before = (read_json(stage.out / INFO_FILE) or {}).get("n", 0)
            try:
                info = append_index(stage.out, stage.vectors)
                return f"appended {info['n'] - before} vectors: {info['n']} in {info['factory']}"
            except EmbedpipeError as e:  # e.g. ids were dropped from the vectors: the index cannot follow by adding
                log.warning("index: cannot append (%s); rebuilding it", e)
                note = " (rebuilt: appending was refused)"
        ours = (stage.out / INFO_FILE).exists()  # replace only an index, never other files
        info = build_index(stage.vectors, stage.out, stage.config, overwrite=ours)
        return (f"{info['factory']} over {info['n']} vectors, recall@10 {info['recall_at_10']:.3f} "
                f"in {info['build_seconds']:.1f}s{note}")


class EvaluateStage(Stage):
    name = "evaluate"
    upstream = ("index",)   # which runs whenever encode does

    def inputs(self, spec: Spec) -> dict[str, str | None]:
        job = spec.evaluate
        return {"index": job.index, "queries": job.queries, "qrels": job.qrels}

    def outputs(self, spec: Spec) -> dict[str, str | None]:
        return {"out": spec.evaluate.out}

    def status(self, spec: Spec, upstream_runs: bool) -> Status:
        from ..formats.reports import read_evaluation
        from ..retrieval.evaluate import evaluation_config, evaluation_inputs

        job = spec.evaluate
        if upstream_runs:
            return Status("run", "after index")
        report = read_evaluation(job.out)
        if report is None:
            return Status("run", "no evaluation yet")
        wanted = _plain(evaluation_config(job))
        if report.get("config") != wanted:
            return Status("run", f"config changed ({_changes(report.get('config') or {}, wanted)})")
        try:
            inputs = evaluation_inputs(job)
        except EmbedpipeError as e:
            return Status("run", str(e))
        if report.get("inputs") != inputs:
            return Status("run", "the index, queries or qrels changed")
        return Status("skip", f"{self.headline(report)}, for this index and these files")

    def run(self, spec: Spec, status: Status) -> str:
        from ..retrieval.evaluate import run_evaluate

        return self.headline(run_evaluate(spec.evaluate))

    @staticmethod
    def headline(report: dict) -> str:
        """'100 queries: nDCG@10 0.7353, Recall@10 0.8400' at the main cut-off (10 when asked, else the largest)."""
        k = 10 if 10 in report["k_values"] else max(report["k_values"])
        metrics = report["index"]
        return (f"{report['queries']} queries: nDCG@{k} {metrics[f'ndcg_at_{k}']:.4f}, "
                f"Recall@{k} {metrics[f'recall_at_{k}']:.4f}")


class ClassifyStage(Stage):
    name = "classify"

    def inputs(self, spec: Spec) -> dict[str, str | None]:
        job = spec.classify
        return {"train": job.train, "test": job.test, **_local_model(job.model)}

    def outputs(self, spec: Spec) -> dict[str, str | None]:
        return {"out": str(spec.classify.out_dir()), "save_model": spec.classify.save_model}

    def status(self, spec: Spec, upstream_runs: bool) -> Status:
        from ..classify.report import REPORT, report_is_current

        job = spec.classify
        if not (job.out_dir() / REPORT).exists():
            return Status("run", "no report yet")
        if not report_is_current(job):
            return Status("run", "the job config or its data changed")
        return Status("skip", "report complete for this config and data")

    def run(self, spec: Spec, status: Status) -> str:
        from ..classify.report import REPORT
        from ..classify.run import run_classify

        job = spec.classify
        if (job.out_dir() / REPORT).exists():  # a stale report of ours: replaced once the new one is complete
            job = dataclasses.replace(job, overwrite=True)
        report = run_classify(job)
        best = report["best"]
        return (f"best {best['method']} {best['pooling']}/{best['head']}: accuracy {best['accuracy']:.4f} "
                f"(report in {job.out_dir()})")


# The stages in the order they run, the order of schema.STAGE_NAMES (tests/pipeline/test_spec.py holds
# them equal); a spec runs those whose section it has.
STAGES: dict[str, Stage] = {stage.name: stage for stage in (EncodeStage(), IndexStage(), EvaluateStage(),
                                                            ClassifyStage())}
