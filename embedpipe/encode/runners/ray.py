"""Ray runner: Ray Data reads the corpus and maps an actor pool of encoders over it.

Each actor holds one onnxruntime session with ``threads`` intra-op threads and asks Ray for about
that many CPUs (see ``actor_layout``), so actors never oversubscribe a node. Without an address an
embedded local Ray bound to 127.0.0.1 is started (and stopped afterwards); with one, embedpipe
joins that cluster.

    >>> for table in run_on_ray(corpus, config, window=8192, workers=None, address=None): ...  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa

from ...errors import EmbedpipeError, first_line
from ...formats.corpus import Corpus
from ...formats.export_dir import load_export
from ...signals import keep_handler_across
from ..mapper import CorpusBatchEncoder, MapperConfig
from .ray_address import check_ray_answers
from .ray_noise import without_known_noise

log = logging.getLogger(__name__)
READ_TASK_CPUS = 0.1  # reading parquet is light next to encoding
OUTPUT_ROW_OVERHEAD = 64  # bytes of an output row besides its float32 vector: id, truncated flag, offsets
BATCHES_PER_ACTOR = 4  # each actor gets at least this many batches, so the last ones balance the load


# An actor that dies (OOM kill, preemption, a crash) is restarted and its batch retried, a bounded
# number of times: a row that kills every actor it meets fails the job instead of looping forever.
# Exceptions the encoder raises (bad rows) are never retried: they fail the job at once.
ACTOR_RETRIES = dict(max_restarts=3, max_task_retries=3)
ACTOR_DEATHS = {"ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "OutOfMemoryError", "SystemException"}


@contextmanager
def ray_session(address: str | None, dashboard: bool = False):
    """Join the cluster at ``address``, or start an embedded local Ray on loopback (no dashboard
    unless ``dashboard``, then on 127.0.0.1 too); yield ``ray``."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # Ray's own warnings (token auth, progress bars) are noise for a CLI user; errors still show.
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR, include_dashboard=dashboard)
    if dashboard:
        quiet["dashboard_host"] = "127.0.0.1"
    try:
        # ray.init installs SIGTERM handlers that exit at once (no finished shard kept, C++ stack
        # lines printed); embedpipe's (signals.py) is put back so SIGTERM stops a run like Ctrl-C.
        with keep_handler_across():
            if address:
                check_ray_answers(address)  # ray.init would wait minutes on an address where no Ray answers
                ray.init(address=address, **quiet)
            else:
                # At least 2 logical CPUs, so a 1-core machine can run the file listing beside an actor.
                ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), _node_ip_address="127.0.0.1",
                         **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "an embedded local Ray"
        raise EmbedpipeError(f"cannot start or join {where}: {first_line(e)}") from None
    try:
        yield ray
    finally:
        if not address:
            _stop_autoscaler_monitor(ray)
        ray.shutdown()


def _stop_autoscaler_monitor(ray) -> None:
    """Kill the embedded Ray's autoscaler monitor (idle on one node) before ``ray.shutdown``: Ray
    sends it SIGTERM, which it ignores, and waits a full second before killing it (Ray 2.60)."""
    try:
        for info in ray._private.worker._global_node.all_processes.get("monitor", []):
            info.process.kill()
    except Exception:  # Ray's internals moved: shutdown simply takes the second
        log.debug("autoscaler monitor not found; ray.shutdown will stop it")


@dataclass(frozen=True)
class ActorLayout:
    workers: int        # actors, each one onnxruntime session
    threads: int        # intra-op threads per session
    actor_cpus: float   # CPUs each actor asks Ray for


def actor_layout(cluster_cpus: float, workers: int | None, threads: int | None) -> ActorLayout:
    """Size the actor pool. Ray Data schedules its file listing as a 1-CPU task, so the actors
    together leave one CPU of the cluster unclaimed; otherwise the pool waits forever for it.

    >>> actor_layout(2, None, None)
    ActorLayout(workers=2, threads=1, actor_cpus=0.5)
    """
    if threads is None:
        threads = max(1, min(4, int(cluster_cpus // workers) if workers else int(cluster_cpus // 4)))
    workers = workers or max(1, int(cluster_cpus // threads))
    spare = max(cluster_cpus - 1, 0.1 * workers)
    return ActorLayout(workers, threads, round(min(threads, spare / workers), 3))


def batch_rows(corpus_rows: int, workers: int, window: int) -> int:
    """Rows per actor call (and per block): a window, but small enough that every actor gets
    BATCHES_PER_ACTOR of them. With one batch per actor the pool waits on whichever actor drew the
    largest or slowest one (20k rows in windows of 8192 on 2 actors: one encodes 60% of the rows).

    >>> batch_rows(20_000, 2, 8192), batch_rows(10_000_000, 8, 8192), batch_rows(10, 2, 8192)
    (2500, 8192, 2)
    """
    return max(1, min(window, -(-corpus_rows // (workers * BATCHES_PER_ACTOR))))


def run_on_ray(corpus: Corpus, config: MapperConfig, *, window: int, workers: int | None = None,
               address: str | None = None, skip_ids: pa.Array | None = None,
               dashboard: bool = False) -> Iterator[pa.Table]:
    # Ray's known false alarm is dropped from stderr while actors start (ray_noise.py).
    with without_known_noise(), ray_session(address, dashboard) as ray:
        from ray.data.context import DEFAULT_TARGET_MAX_BLOCK_SIZE

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # output rows in corpus order
        context.enable_progress_bars = False              # embedpipe shows its own
        context.print_on_execution_start = False
        # Ray 2.60's new parquet reader lists footers in an actor of its own: one more worker process
        # to start beside the encoders, ~1 s of a 20k-row job on 2 cores. The classic reader needs none.
        context.use_datasource_v2 = False
        context.raise_original_map_exception = True       # an EmbedpipeError (a bad row) reaches the user as is
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # failures reach the user as one line
        # A corpus smaller than one block per actor simply leaves actors idle; nothing to warn about.
        warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
        cpus = ray.cluster_resources().get("CPU", 1)
        layout = actor_layout(cpus, workers, config.plan.threads)
        window = batch_rows(corpus.rows, layout.workers, window)
        # Every block must hold a whole call's output: Ray Data splits a block over this size into
        # pieces, and an actor's task waits on the driver to take all but a couple of them, so split
        # outputs left actors idle between calls (output, the vectors, is ~20x the texts' bytes).
        output_bytes = window * (4 * load_export(config.export_dir).dim + OUTPUT_ROW_OVERHEAD)
        context.target_max_block_size = max(DEFAULT_TARGET_MAX_BLOCK_SIZE, int(1.5 * output_bytes))
        config = replace(config, plan=replace(config.plan, threads=layout.threads))
        log.info("encoding on Ray: %d actor(s) x %d thread(s), %g CPUs in the cluster",
                 layout.workers, layout.threads, cpus)
        try:
            dataset = _encoded(ray, corpus, config, window, layout, skip_ids)
            yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        except ray.exceptions.RayError as e:  # a bad row, dying actors, an unreadable file
            raise _user_error(e) from None


def _encoded(ray, corpus: Corpus, config: MapperConfig, window: int, layout: ActorLayout, skip_ids):
    """The dataset of (id, vector, truncated) tables: the corpus read in blocks of about ``window``
    rows, each mapped by one encoder actor of the pool."""
    if corpus.is_plain_parquet:
        dataset = ray.data.read_parquet(corpus.files, filesystem=corpus.filesystem,
                                        columns=[corpus.id_column, corpus.text_column], num_cpus=READ_TASK_CPUS)
    else:  # JSON Lines, CSV, save_to_disk, a title to join: read by embedpipe's own reader, one task a file
        dataset = ray.data.from_items([{"file": path} for path in corpus.files]).map_batches(
            functools.partial(read_corpus_files, corpus, window), batch_size=1, batch_format="pyarrow",
            num_cpus=READ_TASK_CPUS)
    # Blocks of one call's rows whatever the files and row groups (big ones cut, small ones joined):
    # each is one task for one actor.
    dataset = dataset.repartition(target_num_rows_per_block=window)
    with warnings.catch_warnings():
        # Ray 2.60 takes actor retry limits only as extra remote args, and calls those deprecated.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return dataset.map_batches(CorpusBatchEncoder, fn_constructor_args=(config, skip_ids), batch_size=window,
                                   batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=layout.workers),
                                   num_cpus=layout.actor_cpus, **ACTOR_RETRIES)


def read_corpus_files(corpus: Corpus, batch_rows: int, files: pa.Table) -> Iterator[pa.Table]:
    """The (id, text) rows of the files named in ``files``, as the local runner reads them."""
    for path in files.column("file").to_pylist():
        for batch in corpus.read_file(path, batch_rows):
            yield pa.Table.from_batches([batch])


def _user_error(error: BaseException) -> EmbedpipeError:
    """One line for what went wrong inside Ray: the EmbedpipeError an actor raised, else the root
    cause's type and first line (Ray wraps both in task errors, keeping the original as ``cause``)."""
    seen, root, top, names = set(), error, error, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error) is EmbedpipeError:
            return error
        root = error
        names.update(cls.__name__ for cls in type(error).__mro__)
        error = getattr(error, "cause", None) or error.__cause__
    if names & ACTOR_DEATHS:
        return EmbedpipeError(f"encoding failed on Ray: encoder actors kept dying (killed, out of memory, or crashing "
                              f"on some input); gave up after {ACTOR_RETRIES['max_restarts']} restarts of each")
    # Ray Data may wrap it in a UserCodeException that keeps only the remote traceback's text.
    marker = f"{EmbedpipeError.__module__}.{EmbedpipeError.__name__}: "
    for line in str(top).splitlines():
        if line.startswith(marker):
            return EmbedpipeError(line[len(marker):])
    return EmbedpipeError(f"encoding failed on Ray: {type(root).__name__}: {first_line(root)}")
