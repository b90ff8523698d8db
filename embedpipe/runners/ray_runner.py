"""Ray runner: Ray Data reads the corpus and maps an actor pool of encoders over it.

Each actor holds one onnxruntime session with ``plan.threads`` intra-op threads and asks Ray for
that many CPUs, so actors never oversubscribe a node. Without an address an embedded local Ray
bound to 127.0.0.1 is started (and stopped afterwards); with one, embedpipe joins that cluster.

    >>> for table in run_on_ray(corpus, config, window=8192, workers=None, address=None): ...
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa

from ..corpus import Corpus
from ..errors import EmbedpipeError
from ..mapper import CorpusBatchEncoder, MapperConfig

log = logging.getLogger(__name__)
READ_TASK_CPUS = 0  # reading parquet is light; a CPU per read task would starve the actors of small nodes


@contextmanager
def ray_session(address: str | None):
    """Join the cluster at ``address``, or start an embedded local Ray on loopback; yield ``ray``."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, include_dashboard=False)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "an embedded local Ray"
        raise EmbedpipeError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def default_workers(cluster_cpus: float, threads: int) -> int:
    """One actor per ``threads`` CPUs the cluster has."""
    return max(1, int(cluster_cpus // threads))


def run_on_ray(corpus: Corpus, config: MapperConfig, *, window: int, workers: int | None = None,
               address: str | None = None) -> Iterator[pa.Table]:
    with ray_session(address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # output rows in corpus order
        context.enable_progress_bars = False              # embedpipe shows its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        cpus = ray.cluster_resources().get("CPU", 1)
        workers = workers or default_workers(cpus, config.plan.threads)
        log.info("encoding on Ray: %d actor(s) x %d thread(s), %g CPUs in the cluster",
                 workers, config.plan.threads, cpus)
        dataset = ray.data.read_parquet(corpus.files, filesystem=corpus.filesystem,
                                        columns=[corpus.id_column, corpus.text_column],
                                        num_cpus=READ_TASK_CPUS)
        # An autoscaling pool: a fixed pool that claims every CPU of the cluster never starts on Ray Data.
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=workers)
        vectors = dataset.map_batches(CorpusBatchEncoder, fn_constructor_args=(config,), batch_size=window,
                                      batch_format="pyarrow", compute=pool, num_cpus=config.plan.threads)
        try:
            yield from vectors.iter_batches(batch_size=None, batch_format="pyarrow")
        except Exception as e:
            cause = _embedpipe_cause(e)
            if cause is not None:
                raise cause from None
            raise


def _embedpipe_cause(error: BaseException) -> EmbedpipeError | None:
    """The EmbedpipeError an actor raised, dug out of Ray's wrappers (they keep it as ``cause``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error) is EmbedpipeError:
            return error
        error = getattr(error, "cause", None) or error.__cause__
    return None
