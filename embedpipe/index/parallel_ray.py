"""Run the parallel build's units (parallel.py: sampling a shard, adding a shard) as Ray tasks, one CPU
each, on the cluster encode joins (encode/runners/ray_cluster.py: checked first that it answers, or an
embedded local Ray on 127.0.0.1). Ray is imported only here.

    >>> with ray_units("127.0.0.1:6379") as run:                      # doctest: +SKIP
    ...     receipts = list(run(add_part, [(part, build_dir, attempt, "ip", "float16"), ...]))

Every alive node that can run a unit is given one of the first units (soft node affinity), the rest go
where CPUs free up: a node whose first worker process starts cold would otherwise find the queue
drained by a warm node's worker, and a cluster of N nodes would build on one. The affinity is soft and
spills when the node's CPUs are held (by another job): a node that dies, or is busy, hands its unit on
rather than keeping the build waiting.

A task lost with its worker or node (killed, out of memory, node gone) is submitted again once, under a
new attempt name for add_part (its files never mix with the lost one's); an error the unit raised
itself (a corrupt shard) is shown as its one line, not retried.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..encode.runners.ray import ACTOR_DEATHS, _user_error
from ..encode.runners.ray_cluster import ray_session
from ..errors import EmbedpipeError

log = logging.getLogger("embedpipe.index")

# what a task lost with its worker or node raises (beside encode's actor deaths)
LOST = {"NodeDiedError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError",
        "ObjectReconstructionFailedError", "ObjectFetchTimedOutError"}
RETRIES = 1  # a unit lost with its node is run once more; twice lost means something is wrong with it


@contextmanager
def ray_units(address: str | None, threads: int | None = None):
    """Yield ``run(function, [args, ...])``, an iterator of results as units finish, on Ray."""
    with ray_session(address) as ray:
        def run(function: Callable, calls: list[tuple]) -> Iterator:
            yield from _run(ray, function, calls, threads)
        yield run


def _run(ray, function: Callable, calls: list[tuple], threads: int | None) -> Iterator:
    cpus = threads or 1
    unit = ray.remote(_with_threads)
    remote = unit.options(num_cpus=cpus, max_retries=0)
    seeds = _seed_strategies(ray, cpus)
    pending = {}
    for k, call in enumerate(calls):
        task = unit.options(num_cpus=cpus, max_retries=0, scheduling_strategy=seeds[k]) if k < len(seeds) else remote
        pending[task.remote(function, call, cpus)] = (call, 0)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        call, tries = pending.pop(ref)
        try:
            yield ray.get(ref)
        except ray.exceptions.RayError as e:
            names = {cls.__name__ for cls in type(e).__mro__}
            if not names & (ACTOR_DEATHS | LOST):
                raise _user_error(e) from None
            if tries >= RETRIES:
                raise EmbedpipeError(f"a unit of the parallel build was lost twice ({type(e).__name__}); "
                                     "see the Ray cluster's logs") from None
            call = _new_attempt(call)
            log.warning("a unit of the parallel build was lost with its worker (%s); running it again",
                        type(e).__name__)
            pending[remote.remote(function, call, cpus)] = (call, tries + 1)


def _seed_strategies(ray, cpus: float) -> list:
    """One soft node-affinity strategy per alive node with ``cpus`` CPUs: the first units, one per node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0.0) >= cpus]
    return [NodeAffinitySchedulingStrategy(node, soft=True, _spill_on_unavailable=True) for node in nodes]


def _new_attempt(call: tuple) -> tuple:
    """add_part's third argument is its attempt name: a rerun writes under a new one."""
    if len(call) >= 3 and isinstance(call[2], str) and len(call[2]) == 8:
        return (*call[:2], uuid.uuid4().hex[:8], *call[3:])
    return call


def _with_threads(function: Callable, call: tuple, threads: int):
    """Run one unit with FAISS limited to the CPUs Ray gave the task (OpenMP would take every core)."""
    import ray

    from .factory import faiss_threads

    with faiss_threads(threads):
        result = function(*call)
    if isinstance(result, dict):  # a part's receipt: say which node added it
        result = {**result, "node": ray.get_runtime_context().get_node_id()}
    return result
