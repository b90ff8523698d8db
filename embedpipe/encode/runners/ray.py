"""Ray runner: a pool of encoder actors, each encoding whole pieces (row ranges of corpus files)
and writing each piece's shard itself, straight to the output's filesystem (a shared path or an
object store); the driver gets back only receipts (file, rows, sha256, node).

Why not Ray Data: its read and repartition tasks ask for whole CPUs of their own next to the
actors, so a cluster of small nodes (two 1-CPU nodes) had every CPU held by a half-CPU actor and
no node with a free CPU for a repartition task: the run made no progress, forever. Here nothing
but the actors asks for CPUs, and ``actor_layout`` sizes them against each node.

Each actor holds one onnxruntime session with ``threads`` intra-op threads. Without an address an
embedded local Ray bound to 127.0.0.1 is started (and stopped afterwards); with one, embedpipe
joins that cluster.

    >>> for receipt in run_on_ray(corpus, config, pieces, "s3://b/v", window=8192): ...  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pyarrow as pa

from ...errors import EmbedpipeError, first_line
from ...formats.corpus import Corpus
from ...signals import keep_handler_across
from ..pieces import Piece, ShardWriter, new_attempt
from ..rows import WorkerConfig
from .ray_address import check_ray_answers

log = logging.getLogger(__name__)
IN_FLIGHT_PER_ACTOR = 2     # a second piece queued behind the one encoding: no idle gap between pieces
LOOK_FOR_NODES_S = 5.0      # how often the pool checks for room on nodes that joined
# An actor that dies (OOM kill, preemption, a lost node) is replaced and its pieces retried, a
# bounded number of times: a row that kills every actor it meets fails the job instead of looping
# forever. Exceptions the encoder raises (bad rows) are never retried: they fail the job at once.
ACTOR_RESTARTS = 3
ACTOR_DEATHS = {"ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "OutOfMemoryError", "SystemException"}


def _actor_failures():
    import ray.exceptions as e

    return (e.RayActorError, e.ActorUnavailableError, e.WorkerCrashedError, e.NodeDiedError)


@contextmanager
def ray_session(address: str | None, dashboard: bool = False):
    """Join the cluster at ``address``, or start an embedded local Ray on loopback (no dashboard
    unless ``dashboard``, then on 127.0.0.1 too); yield ``ray``."""
    import ray

    if ray.is_initialized():
        if address:
            _check_connected_to(ray, address)
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
                # At least 2 logical CPUs: two actors even on a 1-core machine (one reading while one encodes).
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


def _check_connected_to(ray, address: str) -> None:
    """A process already connected to Ray (a notebook, a test session) keeps that connection; an
    address naming another cluster, or where no Ray answers, is refused rather than ignored."""
    check_ray_answers(address)
    if address == "auto" or address.startswith("ray://"):
        return
    current = ray.get_runtime_context().gcs_address
    if _endpoint(current) != _endpoint(address):
        raise EmbedpipeError(f"this process is already connected to the Ray cluster at {current}, not {address}; "
                             "call ray.shutdown() first, or run in a fresh process")


def _endpoint(address: str) -> tuple[str, str]:
    """(host, port) with every address of this machine as one host: Ray reports its GCS at the
    node's own IP even when it was named as 127.0.0.1 or localhost."""
    host, _, port = address.rpartition(":")
    try:
        host = socket.gethostbyname(host)
        with socket.socket() as probe:
            probe.bind((host, 0))  # only an address of this machine can be bound
        return "this machine", port
    except OSError:
        return host, port


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
    return [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]


def run_on_ray(corpus: Corpus, config: WorkerConfig, pieces: list[Piece], staging: str, *, window: int,
               known_ids: pa.Array | None = None, dtype: str = "float32", workers: int | None = None,
               address: str | None = None, dashboard: bool = False) -> Iterator[dict]:
    """Encode ``pieces`` on an actor pool; yield each piece's receipt as it finishes."""
    if not pieces:
        return
    # Actors are started with max_restarts=0 (the pool replaces dead ones itself), so Ray's
    # "constructor arguments in the object store and max_restarts > 0" false alarm (ray#57733) never fires.
    with ray_session(address, dashboard) as ray:
        pool = ShardWriterPool(ray, ShardWriter, (config, corpus, staging),
                           {"dtype": dtype, "window": window}, workers, config.plan.threads)
        try:
            known = ray.put(known_ids) if known_ids is not None and any(p.filter_known for p in pieces) else None
            yield from pool.run(pieces, known)
        except ray.exceptions.RayError as e:  # a bad row, an unreadable file, a failure Ray reports
            raise _user_error(e) from None
        finally:
            pool.stop()


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

    def __init__(self, ray, actor_class, args: tuple, kwargs: dict, workers: int | None, threads: int | None):
        self.ray, self.args, self.kwargs, self.fixed = ray, args, kwargs, workers
        self.layout = actor_layout(alive_node_cpus(ray), workers, threads)
        config = args[0]
        self.args = (replace(config, plan=replace(config.plan, threads=self.layout.threads)), *args[1:])
        self.remote = ray.remote(actor_class).options(num_cpus=self.layout.actor_cpus, max_restarts=0,
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
        ray = self.ray
        self.queue, queue, tries = deque(pieces), None, Counter()
        queue = self.queue
        waiting_since = time.monotonic()
        while queue or any(a.in_flight for a in self.actors):
            self._assign(queue, known)
            refs = [a.ready_ref for a in self.actors if not a.ready]
            refs += [ref for a in self.actors for ref in a.in_flight]
            if not refs:
                raise EmbedpipeError(self._give_up())
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
                        raise EmbedpipeError(self._give_up()) from None
                    queue.appendleft(piece)
                    self._lost(actor, e)
            if any(a.ready for a in self.actors):
                waiting_since = time.monotonic()
            elif queue and time.monotonic() - waiting_since > placement_timeout():
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
        cause = _embedpipe_cause(error)
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
            raise EmbedpipeError(self._give_up())
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

    def _give_up(self) -> str:
        return (f"encoding failed on Ray: encoder actors kept dying (killed, out of memory, or crashing on some "
                f"input); gave up after {ACTOR_RESTARTS} restarts of each")

    def _unplaceable(self) -> str:
        nodes = ", ".join(f"{c:g}" for c in alive_node_cpus(self.ray)) or "none"
        return (f"no encoder actor could start on the Ray cluster in {placement_timeout():g} s: each asks for "
                f"{self.layout.actor_cpus:g} CPU(s) and the alive nodes have {nodes} CPU(s), held by other "
                "jobs or lost; pass fewer threads, or add nodes")

    def stop(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor.handle, no_restart=True)
            except Exception:  # its node is gone already
                pass
        self.actors = []


def placement_timeout() -> float:
    return float(os.environ.get("EMBEDPIPE_RAY_START_TIMEOUT_S", "120"))


def _embedpipe_cause(error: BaseException) -> EmbedpipeError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, EmbedpipeError) and "RayTaskError" not in type(error).__name__:
            return error
        error = getattr(error, "cause", None) or error.__cause__
    return None


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
                              f"on some input); gave up after {ACTOR_RESTARTS} restarts of each")
    # Ray may wrap it in an error that keeps only the remote traceback's text.
    marker = f"{EmbedpipeError.__module__}.{EmbedpipeError.__name__}: "
    for line in str(top).splitlines():
        if line.startswith(marker):
            return EmbedpipeError(line[len(marker):])
    return EmbedpipeError(f"encoding failed on Ray: {type(root).__name__}: {first_line(root)}")
