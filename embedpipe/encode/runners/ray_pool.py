"""The actor pool the Ray runner encodes with: actors sized against each node, pieces handed out
two at a time per actor, lost actors replaced and their pieces retried.

Why not Ray Data: its read and repartition tasks ask for whole CPUs of their own next to the
actors, so a cluster of small nodes (two 1-CPU nodes) had every CPU held by a half-CPU actor and
no node with a free CPU for a repartition task: the run made no progress, forever. Here nothing
but the actors asks for CPUs, and ``actor_layout`` sizes them against each node.

    >>> pool = ShardWriterPool(ray, config, corpus, staging, dtype="float32", window=8192, workers=None)
    ... # doctest: +SKIP
    >>> for receipt in pool.run(pieces, known=None): ...                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ...errors import EmbedpipeError
from ...formats.corpus import Corpus
from ..pieces import Piece, ShardWriter, new_attempt
from ..rows import WorkerConfig
from .gpus import gpu_actor_count, node_gpus
from .timeouts import actor_start_timeout

log = logging.getLogger(__name__)
IN_FLIGHT_PER_ACTOR = 2     # a second piece queued behind the one encoding: no idle gap between pieces
LOOK_FOR_NODES_S = 5.0      # how often the pool checks for room on nodes that joined
# An actor that dies (OOM kill, preemption, a lost node) is replaced and its pieces retried, a
# bounded number of times: a row that kills every actor it meets fails the job instead of looping
# forever. Exceptions the encoder raises (bad rows) are never retried: they fail the job at once.
ACTOR_RESTARTS = 3
GAVE_UP = (f"encoding failed on Ray: encoder actors kept dying (killed, out of memory, or crashing on some input); "
           f"gave up after {ACTOR_RESTARTS} restarts of each")


class ShardWriterActor(ShardWriter):
    """A ShardWriter in a Ray actor: its receipts name the node it runs on."""

    def __init__(self, *args, **kwargs):
        import ray

        super().__init__(*args, **kwargs)
        self.node_id = ray.get_runtime_context().get_node_id()


def _actor_failures():
    import ray.exceptions as e

    return (e.RayActorError, e.ActorUnavailableError, e.WorkerCrashedError, e.NodeDiedError)


@dataclass(frozen=True)
class ActorLayout:
    workers: int        # actors, each one onnxruntime session
    threads: int        # intra-op threads per session
    actor_cpus: float   # CPUs each actor asks Ray for


def actor_layout(node_cpus: list[float], workers: int | None, threads: int | None) -> ActorLayout:
    """Size the actor pool against each node's CPUs, not the cluster's sum: an actor lives on one
    node, so two 1-CPU nodes hold two 1-CPU actors, never one 2-CPU actor (which would wait forever).
    Nothing else of the run asks Ray for CPUs (no Ray Data tasks), so actors may take them all.

    >>> actor_layout([2], None, None), actor_layout([1, 1], None, None)
    (ActorLayout(workers=2, threads=1, actor_cpus=1.0), ActorLayout(workers=2, threads=1, actor_cpus=1.0))
    >>> actor_layout([16], None, None), actor_layout([1, 1], 3, None)
    (ActorLayout(workers=4, threads=4, actor_cpus=4.0), ActorLayout(workers=3, threads=1, actor_cpus=0.5))
    """
    nodes = [c for c in node_cpus if c > 0] or [1.0]
    biggest = max(nodes)
    if threads is None:
        per_actor = sum(nodes) / workers if workers else biggest / 4
        threads = max(1, min(4, int(per_actor), int(biggest)))
    cpus = min(float(threads), biggest)
    if workers is None:
        workers = actors_fitting(nodes, cpus)
    elif actors_fitting(nodes, cpus) < workers:   # more actors asked for than fit whole: share CPUs
        shares = sorted({c / k for c in nodes for k in range(1, workers + 1) if c / k <= cpus}, reverse=True)
        cpus = next((a for a in shares if actors_fitting(nodes, a) >= workers), min(nodes) / workers)
    return ActorLayout(workers, threads, math.floor(cpus * 1000) / 1000)


def actors_fitting(node_cpus: list[float], actor_cpus: float) -> int:
    return sum(int(c / actor_cpus + 1e-9) for c in node_cpus)


def alive_node_cpus(ray) -> list[float]:
    """The CPUs of each node of the cluster that is alive now."""
    return [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]


@dataclass
class _Actor:
    handle: object
    ready_ref: object
    ready: bool = False
    node_id: str | None = None
    in_flight: dict = field(default_factory=dict)   # task ref -> (piece, attempt)


class ShardWriterPool:
    """Actors that each encode one piece at a time (a second queued behind it), placed by Ray on
    whichever nodes have room. The pool, not Ray, replaces an actor that dies: its pieces go back
    to the queue under a new attempt name, a replacement starts only while the alive nodes have
    room for it, and work goes only to actors that have started, so a lost node neither stalls
    the run nor retries forever. Nodes that join later get actors too (unless ``workers`` is fixed)."""

    def __init__(self, ray, config: WorkerConfig, corpus: Corpus, staging: str, *, dtype: str, window: int,
                 workers: int | None, gpus_per_actor: float = 0.0):
        if gpus_per_actor:   # GPU actors: as many as the GPUs hold, placed by Ray on GPU nodes
            workers = gpu_actor_count(node_gpus(ray), gpus_per_actor, workers)
        self.ray, self.fixed = ray, workers
        self.layout = actor_layout(alive_node_cpus(ray), workers, config.plan.threads)
        config = replace(config, plan=replace(config.plan, threads=self.layout.threads))
        self.args, self.kwargs = (config, corpus, staging), {"dtype": dtype, "window": window}
        self.remote = ray.remote(ShardWriterActor).options(num_cpus=self.layout.actor_cpus, num_gpus=gpus_per_actor,
                                                      max_restarts=0,
                                                      max_task_retries=0)
        self.actors: list[_Actor] = []
        self.queue: deque = deque()
        self.deaths = 0
        self.last_look = time.monotonic()
        log.info("encoding on Ray: %d actor(s) x %d thread(s), %g CPU(s) each; nodes' CPUs: %s",
                 self.layout.workers, self.layout.threads, self.layout.actor_cpus,
                 ", ".join(f"{c:g}" for c in alive_node_cpus(ray)))
        for _ in range(self.layout.workers):
            self._start_actor()

    def _start_actor(self) -> None:
        handle = self.remote.remote(*self.args, **self.kwargs)
        self.actors.append(_Actor(handle, handle.ready.remote()))

    def run(self, pieces: list[Piece], known) -> Iterator[dict]:
        """Each piece's receipt as it finishes; ``known`` is the object ref of the known ids (or None)."""
        ray = self.ray
        queue = self.queue = deque(pieces)   # _lost puts a dead actor's pieces back here too
        tries = Counter()                      # piece number -> times an actor died encoding it
        waiting_since = time.monotonic()
        while queue or any(a.in_flight for a in self.actors):
            self._assign(queue, known)
            refs = [a.ready_ref for a in self.actors if not a.ready]
            refs += [ref for a in self.actors for ref in a.in_flight]
            if not refs:
                raise EmbedpipeError(GAVE_UP)
            done, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            for ref in done:
                actor = next(a for a in self.actors if ref is a.ready_ref or ref in a.in_flight)
                if ref is actor.ready_ref:
                    try:
                        actor.node_id, actor.ready = ray.get(ref), True
                    except _actor_failures() as e:
                        self._lost(actor, e)
                    continue
                piece, attempt = actor.in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except _actor_failures() as e:
                    tries[piece.number] += 1
                    if tries[piece.number] > ACTOR_RESTARTS:
                        raise EmbedpipeError(GAVE_UP) from None
                    queue.appendleft(piece)
                    self._lost(actor, e)
            if any(a.ready for a in self.actors):
                waiting_since = time.monotonic()
            elif queue and time.monotonic() - waiting_since > actor_start_timeout():
                raise EmbedpipeError(self._unplaceable())
            self._look_for_new_nodes()

    def _assign(self, queue: deque, known) -> None:
        for actor in self.actors:
            while actor.ready and queue and len(actor.in_flight) < IN_FLIGHT_PER_ACTOR:
                piece, attempt = queue.popleft(), new_attempt()
                ref = actor.handle.encode.remote(piece, attempt, known if piece.filter_known else None)
                actor.in_flight[ref] = (piece, attempt)

    def _lost(self, actor: _Actor, error: BaseException) -> None:
        """An actor died (killed, out of memory, its node lost): put its pieces back, maybe replace it."""
        cause = embedpipe_cause(error)
        if cause is not None:          # its constructor refused (a corrupt model): no retry helps
            raise cause
        if actor not in self.actors:
            return
        self.actors.remove(actor)
        self.deaths += 1
        log.warning("an encoder actor on node %s died (%s); its pieces go to the others",
                    (actor.node_id or "?")[:12], type(error).__name__)
        self.queue.extendleft(piece for piece, _ in actor.in_flight.values())
        actor.in_flight.clear()
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # already gone with its node
            pass
        if self.deaths > ACTOR_RESTARTS * self.layout.workers:
            raise EmbedpipeError(GAVE_UP)
        if len(self.actors) < self._capacity():
            self._start_actor()

    def _capacity(self) -> int:
        if self.fixed:
            return self.fixed
        return max(1, actors_fitting(alive_node_cpus(self.ray), self.layout.actor_cpus))

    def _look_for_new_nodes(self) -> None:
        if self.fixed or time.monotonic() - self.last_look < LOOK_FOR_NODES_S:
            return
        self.last_look = time.monotonic()
        for _ in range(self._capacity() - len(self.actors)):
            log.info("more room on the cluster (a node joined): starting another encoder actor")
            self._start_actor()

    def _unplaceable(self) -> str:
        nodes = ", ".join(f"{c:g}" for c in alive_node_cpus(self.ray)) or "none"
        return (f"no encoder actor could start on the Ray cluster in {actor_start_timeout():g} s: each asks for "
                f"{self.layout.actor_cpus:g} CPU(s) and the alive nodes have {nodes} CPU(s), held by other "
                "jobs or lost; pass fewer threads, or add nodes")

    def stop(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor.handle, no_restart=True)
            except Exception:  # its node is gone already
                pass
        self.actors = []


def embedpipe_cause(error: BaseException) -> EmbedpipeError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, EmbedpipeError) and "RayTaskError" not in type(error).__name__:
            return error
        error = getattr(error, "cause", None) or error.__cause__
    return None
