"""Vector directory -> FAISS index directory (formats/index_dir.py), built or extended.

    >>> info = build_index("corpus.vectors", "corpus.index", IndexConfig(factory="auto"))   # doctest: +SKIP
    >>> info["factory"], info["search_params"], info["recall_at_10"]                        # doctest: +SKIP
    ('HNSW32', 'efSearch=48', 0.962)

Building streams the shards twice: once to pick a training sample and the tuning queries, once to
add vectors in chunks (while exact search of the tuning queries runs over the same chunks), so
memory stays near the index's own size. The tuning queries are held out: not trained on, and added
to the index only after tuning, so they are searched as unseen points like real queries (a point
already in an HNSW graph is reached through its own links, which would flatter recall). Files are
written in a staging directory that replaces INDEX_DIR only when complete.

index.json records what the index was built from (the vector manifest, its sha256, the IndexConfig),
so a pipeline can tell the index is up to date, and ``append_index`` can add exactly the shards the
index does not hold yet (an incremental encode adds new shards and never rewrites published ones):

    >>> append_index("corpus.index", "corpus.vectors")["appends"][-1]["rows"]              # doctest: +SKIP
    1200
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__, checks
from ..errors import BadInput, ConfigError, EmbedpipeError
from ..formats.beir import read_queries
from ..formats.index_dir import FORMAT_VERSION, INFO_FILE, METRICS, read_tuning, upload_index_dir, write_index_dir
from ..formats.vectors import VectorSet, identity_of, open_vectors
from ..fsio import check_output, check_output_dir, is_url, local_path, write_json_atomic
from ..progress import Progress
from ..storage.store import Store
from .choose import (
    CHOICE_SAMPLE_ROWS,
    HNSW_EF_CONSTRUCTION,
    MEASURED_CHOICE_MIN_ROWS,
    candidate_factories,
    choose_factory,
    measure_candidates,
    parse_size,
    pick_measured,
    training_rows,
)
from .load import is_exact, open_index
from .params import ExactTopK, Tuning, apply_search_params, faiss_metric, tune_search_params

log = logging.getLogger("embedpipe.index")

RECALL_K = 10
OPQ_ITERATIONS = 10


# recall_margin: nprobe / efSearch are tuned to target_recall + recall_margin on the tuning queries,
# because a value that just reaches the target on ~1000 sample queries misses it on other queries
# about as often as not: the sample's mean recall is a noisy estimate. Measured with
# scripts/bench_index.py's margin analysis (2000 real WordNet queries split at random 400 times into
# 1000 that tune and 1000 unseen; the tuner's rule applied to each split; 1 FAISS thread):
#   margin                              0      0.005   0.01   0.015
#   1M x 384, IVF4096,PQ192x4fs,RFlat
#     unseen recall below 0.95         35%     13%      2%     1%
#     mean queries/s (Flat: 112)      3238    2889    2590   2338
#   88k real, HNSW32
#     unseen recall below 0.95         40%      4%      1%     0%
#     mean queries/s (Flat: ~1240)    2942    2515    2277   2024
# 0.01 is the smallest margin that misses on at most ~2% of splits in both; it costs ~20% of the
# queries/s at 1M (still ~23x Flat). With 250 / 500 tuning queries the 0.01 margin missed on 15% / 5%
# of splits at 1M: fewer tuning queries need a wider margin, and the mean tuning-minus-unseen gap was
# only 0.0005-0.002, so the misses are noise, not bias.


@dataclass(frozen=True)
class IndexConfig:
    factory: str = "auto"            # "auto" (chosen under max_memory) or any FAISS factory string
    metric: str = "ip"               # "ip": inner product (cosine for normalized vectors); "l2"
    max_memory: int | str = "4GB"    # what the index may take in memory; guides the auto choice
    target_recall: float = 0.95      # recall@10 vs exact search that nprobe / efSearch are tuned to
    recall_margin: float = 0.01      # tuned to target_recall + this on the tuning queries (above)
    tuning_queries: int = 1000       # how many tuning queries (held-out corpus vectors by default)
    tuning_vectors: str | None = None  # sample *queries* to tune on instead (a vector dir, or a queries
                                       # parquet id,text): for queries unlike documents (keywords vs passages)
    add_batch_rows: int = 65_536     # vectors read and added per step
    seed: int = 0                    # for the training and tuning samples
    tuning_prompt_name: str | None = None  # a tuning queries parquet gets the recorded query prompt, or the
    tuning_prompt: str | None = None       # model's prompt of this name, or this text ("" = none)
    ef_construction: int | None = None  # HNSW graphs' construction search width; None: HNSW_EF_CONSTRUCTION
                                        # (80) for `auto`'s choice, FAISS's 40 for a factory given by name

    def __post_init__(self):
        checks.text("factory", self.factory)
        checks.one_of("metric", self.metric, METRICS)
        try:
            parse_size(self.max_memory)
        except EmbedpipeError as e:
            raise ConfigError("max_memory", f"is not a size: {e}") from None
        checks.number_in("target_recall", self.target_recall, 0.0, 1.0, low_open=True)
        checks.number_in("recall_margin", self.recall_margin, 0.0, 0.1)
        checks.at_least("tuning_queries", self.tuning_queries, 1)
        checks.path("tuning_vectors", self.tuning_vectors, optional=True)
        checks.at_least("add_batch_rows", self.add_batch_rows, 1)
        checks.at_least("seed", self.seed, 0)
        checks.text("tuning_prompt_name", self.tuning_prompt_name, optional=True)
        if self.tuning_prompt is not None and not isinstance(self.tuning_prompt, str):
            raise ConfigError("tuning_prompt", f"must be a text, got {self.tuning_prompt!r}")
        checks.at_least("ef_construction", self.ef_construction, 1, optional=True)

    def check(self) -> IndexConfig:
        """Kept for callers of the earlier API: the config checked itself when it was built."""
        return self


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """FAISS (OpenMP) threads for the block: training, adding and searching; None = FAISS's default
    (all cores). Restored afterwards, so a library caller's setting survives."""
    checks.at_least("threads", threads, 1, optional=True)
    before = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_reason(error: RuntimeError) -> str:
    """FAISS errors end with 'Error in <function> at <file>: <reason>'; keep the reason."""
    text = str(error).strip()
    return text.splitlines()[-1].split(": ", 1)[-1] if text else "rejected"


def make_index(factory: str, dim: int, metric: str) -> faiss.Index:
    """An empty FAISS index, or an EmbedpipeError naming the factory string FAISS cannot parse."""
    try:
        return faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as e:
        reason = _faiss_reason(e)
        raise EmbedpipeError(f"FAISS cannot build index {factory!r} for dimension {dim}: {reason}") from None


def metric_warnings(manifest: dict, metric: str) -> list[str]:
    """Tell the user when the metric does not fit how the vectors were (not) normalized."""
    normalized = manifest.get("normalize")
    if normalized is None:
        return ["the vector manifest does not say whether vectors are normalized; "
                f"metric {metric} is used as given"]
    if metric == "ip" and not normalized:
        return ["the vectors are not normalized, so inner-product scores are not cosine similarities "
                "and long vectors win; re-encode with normalization for cosine, or use metric l2"]
    if metric == "l2" and normalized:
        return ["the vectors are normalized: metric l2 ranks exactly like cosine, "
                "but metric ip would report the cosine similarity itself as the score"]
    return []


def shorten_opq_training(index: faiss.Index, iterations: int = OPQ_ITERATIONS) -> None:
    """Fewer OPQ rotation iterations than FAISS's 50: most of the gain comes early, and 50 cost
    minutes per 30k training vectors on 2 cores. Applied to auto-chosen factories only."""
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = iterations


def hnsw_graph(index: faiss.Index) -> faiss.IndexHNSW | None:
    """The HNSW index that holds the vectors' graph (not an IVF's HNSW quantizer), if there is one."""
    inner = faiss.downcast_index(index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def prepare_auto_index(index: faiss.Index, ef_construction: int | None = None) -> None:
    """What `auto` sets on the index it chose before training: fewer OPQ iterations, and a wider
    HNSW construction search (``ef_construction``, by default HNSW_EF_CONSTRUCTION)."""
    shorten_opq_training(index)
    graph = hnsw_graph(index)
    if graph is not None:
        graph.hnsw.efConstruction = ef_construction or HNSW_EF_CONSTRUCTION


def set_ef_construction(index: faiss.Index, factory: str, ef_construction: int) -> None:
    """efConstruction for the graph of a factory given by name; an error when it builds no HNSW graph."""
    graph = hnsw_graph(index)
    if graph is None:
        raise EmbedpipeError(f"ef_construction applies to HNSW indexes; {factory!r} builds no HNSW graph",
                             fields=("ef_construction",))
    graph.hnsw.efConstruction = ef_construction


def _nlist_for(n: int) -> int:
    from .choose import ivf_centroids

    return ivf_centroids(n)


def _nlist(index: faiss.Index) -> int | None:
    try:
        return faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        return None


def gather_rows(vectors: VectorSet, rows: np.ndarray, batch_rows: int) -> tuple[list, np.ndarray]:
    """(ids, vectors) at the given row positions, in the order given, in one streaming pass."""
    order = np.argsort(rows)
    sorted_rows = rows[order]
    out = np.empty((len(rows), vectors.dim), dtype=np.float32)
    ids: list = [None] * len(rows)
    start = 0
    for batch_ids, batch in vectors.iter_batches(batch_rows):
        lo, hi = np.searchsorted(sorted_rows, [start, start + len(batch)])
        local = sorted_rows[lo:hi] - start
        out[order[lo:hi]] = batch[local]
        for position, doc_id in zip(order[lo:hi], batch_ids.take(pa.array(local)).to_pylist()):
            ids[position] = doc_id
        start += len(batch)
    if start != vectors.rows:
        raise EmbedpipeError(f"{vectors.path} holds {start} vectors, its manifest says {vectors.rows}")
    return ids, out


@dataclass
class _Samples:
    query_rows: np.ndarray       # held-out tuning queries: row positions in the vector directory
    query_ids: list
    queries: np.ndarray
    train: np.ndarray | None     # training vectors, never overlapping the queries


def _draw_samples(vectors: VectorSet, index: faiss.Index | None, config: IndexConfig, sample_rows: int = 0) -> _Samples:
    """Held-out tuning queries and a training sample for ``index`` (for an index still to be chosen,
    None: at least ``sample_rows`` vectors, and enough to train any IVF at this scale)."""
    n, rng = vectors.rows, np.random.default_rng(config.seed)
    external = _tuning_vectors(config, vectors, rng) if config.tuning_vectors else None
    n_queries = 0 if external is not None else min(config.tuning_queries, max(n // 10, 1))
    if index is None:
        n_train = min(max(training_rows(n, max(_nlist_for(n), 1)), sample_rows), n - n_queries)
    else:
        n_train = 0 if index.is_trained else min(training_rows(n, _nlist(index)), n - n_queries)
    rows = rng.choice(n, size=n_queries + n_train, replace=False)
    ids, picked = gather_rows(vectors, rows, config.add_batch_rows)
    queries = external if external is not None else picked[:n_queries]
    log.info("tuning on %d %s, training on %d vectors", len(queries),
             "query vectors" if external is not None else "held-out corpus vectors", n_train)
    return _Samples(rows[:n_queries], ids[:n_queries], queries, picked[n_queries:] if n_train else None)


def _tuning_vectors(config: IndexConfig, vectors: VectorSet, rng: np.random.Generator) -> np.ndarray:
    """Sample query vectors to tune on: a vector directory, or a queries parquet (id, text) that is
    encoded here exactly as the corpus was (model, pooling, normalization from its manifest), with the
    query prompt the manifest recorded (or the config's tuning prompt)."""
    path = Path(config.tuning_vectors)
    if path.is_file():
        from ..encode.encoder import TextEncoder

        _, texts = read_queries(path)
        if len(texts) > config.tuning_queries:
            texts = [texts[i] for i in np.sort(rng.choice(len(texts), config.tuning_queries, replace=False))]
        log.info("encoding %d tuning queries from %s", len(texts), path)
        return TextEncoder.from_manifest(vectors.manifest, query=True, prompt_name=config.tuning_prompt_name,
                                         prompt=config.tuning_prompt).encode(texts)
    tuning = open_vectors(path)
    if tuning.dim != vectors.dim:
        raise EmbedpipeError(f"tuning vectors {tuning.path} have dimension {tuning.dim}, the corpus {vectors.dim}")
    _, queries = tuning.read_all()
    if len(queries) > config.tuning_queries:
        queries = queries[np.sort(rng.choice(len(queries), config.tuning_queries, replace=False))]
    if not len(queries):
        raise EmbedpipeError(f"tuning vectors {tuning.path} hold no vectors")
    return queries


def _train(index: faiss.Index, factory: str, train: np.ndarray) -> None:
    started = time.monotonic()
    log.info("training %s on %d vectors", factory, len(train))
    try:
        index.train(train)
    except RuntimeError as e:
        reason = _faiss_reason(e)
        raise EmbedpipeError(f"training {factory} on {len(train)} vectors failed: {reason}") from None
    log.info("trained in %.1fs", time.monotonic() - started)


def _add_all(index: faiss.Index, vectors: VectorSet, exact: ExactTopK | None, batch_rows: int,
             held_out: np.ndarray) -> pa.Array:
    """Add every vector except the held-out rows in chunks, feeding the same chunks to exact
    search; returns the ids in the order they were added (= the index's row labels)."""
    held_out = np.sort(held_out)
    ids, start, added = [], 0, 0
    with Progress(vectors.rows, "vectors added") as progress:
        for batch_ids, batch in vectors.iter_batches(batch_rows):
            keep = ~np.isin(np.arange(start, start + len(batch)), held_out)
            if not keep.all():
                batch_ids, batch = batch_ids.filter(pa.array(keep)), batch[keep]
            index.add(batch)
            if exact is not None:
                exact.add(batch, added)
            ids.append(batch_ids)
            start += len(keep)
            added += len(batch)
            progress.update(len(keep))
    if start != vectors.rows:
        raise EmbedpipeError(f"{vectors.path} holds {start} vectors, its manifest says {vectors.rows}")
    return _concat_ids(ids, vectors)


def _concat_ids(ids: list[pa.Array], vectors: VectorSet) -> pa.Array:
    try:
        return pa.concat_arrays(ids)
    except pa.ArrowInvalid as e:
        raise EmbedpipeError(f"{vectors.path}: the id column has different types in different shards ({e})") from None


def build_index(vectors_dir: str | os.PathLike, out: str | os.PathLike, config: IndexConfig = IndexConfig(),
                *, overwrite: bool = False, threads: int | None = None) -> dict:
    """Build, tune and write INDEX_DIR from a vector directory; returns what index.json holds.
    ``threads``: FAISS threads (None = all cores); how fast it builds, not what it builds."""
    with faiss_threads(threads):
        return _build_index(vectors_dir, out, config, overwrite)


def _build_index(vectors_dir, out, config: IndexConfig, overwrite: bool) -> dict:
    started = time.monotonic()
    checks.boolean("overwrite", overwrite)
    if is_url(out) and local_path(out) is None:   # an object store: build here, then upload
        if Store.at(str(out)).exists(INFO_FILE) and not overwrite:
            raise BadInput(f"output {out} already holds an index; pass overwrite=true to replace it",
                           fields=("overwrite",))
        with tempfile.TemporaryDirectory(prefix="embedpipe-index-") as local:
            info = _build_index(vectors_dir, Path(local) / "index", config, overwrite)
            upload_index_dir(Path(local) / "index", str(out))
        log.info("uploaded the index to %s", out)
        return info
    out = check_output(out, {"vectors": vectors_dir, "tuning queries": config.tuning_vectors})
    vectors = open_vectors(vectors_dir, verify=True)
    out = check_output_dir(out, overwrite, INFO_FILE)
    n, dim = vectors.rows, vectors.dim
    if n == 0:
        raise EmbedpipeError(f"{vectors.path} holds no vectors; there is nothing to index")
    warnings = metric_warnings(vectors.manifest, config.metric)
    for warning in warnings:
        log.warning("warning: %s", warning)
    max_memory = parse_size(config.max_memory)
    factory = choose_factory(n, dim, max_memory) if config.factory == "auto" else config.factory
    samples, choice = None, None
    candidates = candidate_factories(n, dim, max_memory) if config.factory == "auto" else [factory]
    if len(candidates) > 1 and n >= MEASURED_CHOICE_MIN_ROWS:
        samples = _draw_samples(vectors, None, config, sample_rows=CHOICE_SAMPLE_ROWS)
        base = samples.train[:CHOICE_SAMPLE_ROWS]
        log.info("auto: measuring %s on %d sampled vectors", ", ".join(candidates), len(base))
        rows = measure_candidates(candidates, base, samples.queries, config.metric, config.target_recall, RECALL_K,
                                  margin=config.recall_margin, ef_construction=config.ef_construction)
        for row in rows:
            log.info("  %-28s %-34s recall@10 %.4f, %8.0f queries/s", row["measured_as"], row["search_params"],
                     row["recall_at_10"], row["qps"])
        factory = pick_measured(rows)["factory"]
        choice = {"sample_rows": len(base), "candidates": rows}
    log.info("index for %d vectors of dimension %d: %s (metric %s)", n, dim, factory, config.metric)
    index = make_index(factory, dim, config.metric)
    if config.factory == "auto":
        prepare_auto_index(index, config.ef_construction)
    elif config.ef_construction is not None:
        set_ef_construction(index, factory, config.ef_construction)

    if samples is None and not is_exact(index):
        samples = _draw_samples(vectors, index, config)
    trained = 0
    if samples is not None and samples.train is not None and not index.is_trained:
        trained = min(len(samples.train), training_rows(n, _nlist(index)))
        _train(index, factory, samples.train[:trained])
    exact = ExactTopK(samples.queries, RECALL_K, config.metric) if samples is not None else None
    held_out = samples.query_rows if samples is not None else np.empty(0, dtype=np.int64)
    ids = _add_all(index, vectors, exact, config.add_batch_rows, held_out)

    if samples is None:
        tuning = Tuning("", 1.0, True)
    else:
        tuning = tune_search_params(index, samples.queries, exact.result()[1], config.target_recall, RECALL_K,
                                    margin=config.recall_margin)
        log.info("search parameters %r give recall@10 %.4f vs exact search (aimed at %.4f: the target %s + "
                 "the margin %s)", tuning.params, tuning.recall, tuning.aim, config.target_recall, config.recall_margin)
        if len(samples.query_rows):  # the held-out rows join the index last; ids.parquet follows
            index.add(samples.queries)
            ids = _concat_ids([ids, pa.array(samples.query_ids, ids.type)], vectors)
        if not tuning.reached:
            warnings.append(f"{factory} reaches recall@10 {tuning.recall:.3f} at most, below the target "
                            f"{config.target_recall}; allow more max_memory or choose a factory with less compression")
            log.warning("warning: %s", warnings[-1])

    def describe(index_bytes: int) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "embedpipe_version": __version__,
            "factory": factory,
            "factory_requested": config.factory,
            "metric": config.metric,
            "n": n,
            "dim": dim,
            "build_seconds": round(time.monotonic() - started, 3),
            "memory_bytes": index_bytes,  # the serialized index, which is what search holds in memory
            "max_memory": max_memory,
            "search_params": tuning.params,
            "recall_at_10": tuning.recall,
            "target_recall": config.target_recall,
            "recall_margin": config.recall_margin,
            "recall_reached": tuning.reached,
            "tuning": {"queries": 0 if samples is None else len(samples.queries),
                       "aimed_at": tuning.aim,
                       "on": None if samples is None else (config.tuning_vectors or "held-out corpus vectors"),
                       "training_vectors": trained,
                       "trials": tuning.trials},
            "recall_measured_at_n": n,
            "auto_choice": choice,
            "warnings": warnings,
            "config": json.loads(json.dumps(asdict(config))),
            **_source(vectors),
        }

    tuning_sample = None
    if samples is not None:
        tuning_sample = (samples.queries, list(samples.query_ids) if len(samples.query_rows) else None)
    info = write_index_dir(out, index, ids, describe, tuning=tuning_sample)
    log.info("wrote %s (%s, %d bytes, %.1fs)", out, factory, info["memory_bytes"], info["build_seconds"])
    return info


def _source(vectors: VectorSet) -> dict:
    """What index.json says about the vectors it holds: path, manifest, and the manifest's sha256."""
    where = vectors.path.resolve() if isinstance(vectors.path, Path) else vectors.path
    return {"vectors": str(where), "manifest": vectors.manifest, "source_manifest_sha256": vectors.manifest_sha256()}


def shard_key(shard: dict) -> tuple[str, str]:
    return (shard.get("file"), shard.get("sha256"))


def new_shards(info: dict, manifest: dict, vectors_dir: Path | str) -> list[dict]:
    """The shards of ``manifest`` the index does not hold yet; an error when the index cannot be
    extended from these vectors (other encoder, or shards it holds were rewritten or removed)."""
    indexed = info.get("manifest") or {}
    if (identity_of(indexed), indexed.get("dim")) != (identity_of(manifest), manifest.get("dim")):
        raise EmbedpipeError(f"{vectors_dir} was encoded differently from the vectors in the index "
                             "(encoder, model or dimension); rebuild the index without append", fields=("append",))
    present = {shard_key(s) for s in manifest.get("shards", [])}
    gone = [shard_key(s)[0] for s in indexed.get("shards", []) if shard_key(s) not in present]
    if gone:
        raise EmbedpipeError(f"shard(s) the index holds are no longer in {vectors_dir} as they were "
                             f"({', '.join(gone[:3])}); the vectors were rebuilt, so rebuild the index without append",
                             fields=("append",))
    held = {shard_key(s) for s in indexed.get("shards", [])}
    return [s for s in manifest.get("shards", []) if shard_key(s) not in held]


def append_index(index_dir: str | os.PathLike, vectors_dir: str | os.PathLike | None = None,
                 *, batch_rows: int = 65_536, threads: int | None = None) -> dict:
    """Add to INDEX_DIR the vectors of the shards it does not hold yet (from ``vectors_dir``, by
    default the directory it was built from). The trained index (IVF centroids, PQ codebooks, HNSW
    graph) is extended, not retrained, and its search parameters are kept; recall@10 is measured
    again on the queries it was tuned on (tuning.parquet) against exact search over all the vectors,
    and index.json says whether it still reaches the target (a warning says when it fell below:
    rebuild to retrain and retune). Returns the new index.json."""
    with faiss_threads(threads):
        return _append_index(index_dir, vectors_dir, batch_rows)


def _append_index(index_dir, vectors_dir, batch_rows: int) -> dict:
    started = time.monotonic()
    path = Path(index_dir)
    loaded = open_index(path)
    info = loaded.info
    source = vectors_dir or info.get("vectors") or ""
    check_output(path, {"vectors": source})  # the index is replaced as a whole: it must not hold its source
    vectors = open_vectors(source, verify=True)
    if vectors.dim != loaded.dim:
        raise EmbedpipeError(f"{vectors.path} holds vectors of dimension {vectors.dim}, the index {loaded.dim}")
    shards = new_shards(info, vectors.manifest, vectors.path)
    rows = sum(int(s["rows"]) for s in shards)
    expected = int(info["n"]) + rows
    if expected != vectors.rows:
        raise EmbedpipeError(f"the index holds {info['n']} vectors and {vectors.path} adds {rows} in new shards, "
                             f"but it holds {vectors.rows}; rebuild the index without append", fields=("append",))
    if not shards:
        info = {**info, **_source(vectors)}
        write_json_atomic(path / INFO_FILE, info)
        log.info("%s already holds every shard of %s: nothing to append", path, vectors.path)
        return info
    index, ids = loaded.index, [loaded.ids]
    added = VectorSet(vectors.store, {**vectors.manifest, "shards": shards, "rows": rows})
    with Progress(rows, "vectors appended") as progress:
        for batch_ids, batch in added.iter_batches(batch_rows):
            clash = pc.is_in(batch_ids, value_set=loaded.ids)
            if pc.any(clash).as_py():
                first = batch_ids.filter(clash)[0].as_py()
                raise EmbedpipeError(f"id {first!r} of a new shard in {vectors.path} is already in the index; "
                                     "rebuild the index without append", fields=("append",))
            index.add(batch)
            ids.append(batch_ids)
            progress.update(len(batch))
    ids = _concat_ids(ids, vectors)
    tuning = read_tuning(path)
    recall = None if tuning is None else remeasure_recall(index, ids, vectors, tuning, info, batch_rows)
    append = {"rows": rows, "shards": [shard_key(s)[0] for s in shards],
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(time.monotonic() - started, 3), "recall_at_10": recall}
    target = float(info.get("target_recall", IndexConfig.target_recall))
    measured = {}
    if recall is not None:
        measured = {"recall_at_10": recall, "recall_reached": recall >= target,
                    "recall_measured_at_n": int(index.ntotal)}
        if recall < target:
            warning = (f"after appending {rows} vectors, recall@10 on the tuning queries fell to {recall:.3f}, "
                       f"below the target {target} (it was {info['recall_at_10']:.3f} at "
                       f"{info.get('recall_measured_at_n')} vectors); rebuild the index (without append) "
                       "to retrain and retune it")
            log.warning("warning: %s", warning)
            measured["warnings"] = [*info.get("warnings", []), warning]
        else:
            log.info("recall@10 on the tuning queries after the append: %.4f (target %s)", recall, target)

    def describe(index_bytes: int) -> dict:
        return {**info, "n": int(index.ntotal), "memory_bytes": index_bytes, **_source(vectors),
                "appends": [*info.get("appends", []), append],
                "recall_measured_at_n": info.get("recall_measured_at_n", info["n"]), **measured}

    info = write_index_dir(path, index, ids, describe, tuning=tuning)
    log.info("appended %d vectors from %d new shard(s) to %s: %d in all", rows, len(shards), path, info["n"])
    return info




def remeasure_recall(index: faiss.Index, ids: pa.Array, vectors: VectorSet, tuning: tuple[np.ndarray, list | None],
                     info: dict, batch_rows: int) -> float:
    """Recall@10 of ``index`` (its search parameters as recorded) on the tuning queries, against exact
    search over every vector of ``vectors``, compared by corpus id (the index's rows are not in the
    vector directory's order). Held-out corpus vectors were added to the index after tuning, so each
    one's own id is left out of both lists, and the next hit counts instead."""
    queries, query_ids = tuning
    k = RECALL_K + (query_ids is not None)
    exact = ExactTopK(queries, k, info["metric"])
    chunks, start = [], 0
    for batch_ids, batch in vectors.iter_batches(batch_rows):
        exact.add(batch, start)
        chunks.append(batch_ids)
        start += len(batch)
    corpus_ids = _concat_ids(chunks, vectors).to_pylist()
    truth_rows = exact.result()[1]
    apply_search_params(index, info.get("search_params", ""))
    _, found_rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    index_ids = ids.to_pylist()
    hits = []
    for i in range(len(queries)):
        own = query_ids[i] if query_ids is not None else None
        truth = [corpus_ids[r] for r in truth_rows[i] if r >= 0 and corpus_ids[r] != own][:RECALL_K]
        found = [index_ids[r] for r in found_rows[i] if r >= 0 and index_ids[r] != own][:RECALL_K]
        if truth:
            hits.append(len(set(truth) & set(found)) / len(truth))
    return float(np.mean(hits)) if hits else 1.0
