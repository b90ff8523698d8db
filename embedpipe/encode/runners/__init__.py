"""Runners encode a list of pieces (pieces.py) and yield one receipt per finished piece, in any
order: each piece's shard is written to the staging location by whoever encoded it, so vectors
never pass through the caller.

    local.py        one ShardWriter in this process, the pieces in order
    ray.py          the Ray runner: a cluster session and an actor pool over it (Ray is imported
                    only in ray*.py)
    ray_cluster.py  join a named Ray cluster (checking first that it answers) or start and stop an
                    embedded local Ray on 127.0.0.1
    ray_pool.py     the actors: sized against each node, pieces handed out, lost actors replaced
    gpus.py         encoder actors on GPUs: how many fit at gpus_per_actor each, or one error line
    timeouts.py     the Ray runner's waits, from $EMBEDPIPE_RAY_CONNECT_TIMEOUT_S and
                    $EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S

``run_encoder`` runs the one named, and ``choose_runner`` resolves ``auto`` (the default) to one
of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from ...formats.corpus import Corpus
from ..pieces import Piece
from ..rows import WorkerConfig
from .local import run_local
from .ray import run_on_ray

RUNNERS = ("auto", "ray", "local")

# `auto` encodes in this process below this many rows to encode when no cluster is named. An
# embedded Ray costs a fixed ~7 s on 2 cores (start 2.5-4 s, actors importing Ray and
# onnxruntime ~3 s, stop 0.35 s) and then encodes no faster than one in-process session on the
# same cores (README, "Ray against local"). At ~550 short glosses/s this many rows take ~90 s
# locally, so past it the start-up is under ~8% of the run and Ray's actor pool is worth having
# (many-core nodes, where one onnxruntime session scales worse than several actors); below it the
# start-up is most of a small job (the 300-row demo: 35 s on Ray, 2 s in process).
AUTO_LOCAL_MAX_ROWS = 50_000



@dataclass(frozen=True)
class RayRunnerOptions:
    """Where the Ray runner runs and how many actors it starts (EncodeJob's ray_* and workers fields)."""

    address: str | None = None   # join this cluster; None = start an embedded local Ray on 127.0.0.1
    workers: int | None = None   # encoder actors; None = as many as the cluster's nodes hold
    dashboard: bool = False      # embedded local Ray only: start its dashboard (on 127.0.0.1)
    gpus_per_actor: float = 0.0  # GPUs each encoder actor asks Ray for (0.5: two actors share a GPU); 0 = CPU actors


def choose_runner(runner: str, rows: int, address: str | None) -> tuple[str, str]:
    """(runner, why): ``auto`` becomes ``ray`` when a cluster is named (``address``; the caller
    passes $RAY_ADDRESS when no address was given) or there are at least AUTO_LOCAL_MAX_ROWS rows
    to encode, else ``local``; an explicit runner is kept.

    >>> choose_runner("auto", 300, None)[0], choose_runner("auto", 300, "ray://head:10001")[0]
    ('local', 'ray')
    >>> choose_runner("auto", 1_000_000, None)
    ('ray', "1,000,000 rows to encode >= 50,000: worth an embedded Ray's ~7 s start-up")
    """
    if runner != "auto":
        return runner, f"--runner {runner}"
    if address:
        return "ray", f"a Ray cluster is named ({address})"
    if rows >= AUTO_LOCAL_MAX_ROWS:
        return "ray", f"{rows:,} rows to encode >= {AUTO_LOCAL_MAX_ROWS:,}: worth an embedded Ray's ~7 s start-up"
    return "local", (f"{rows:,} rows to encode < {AUTO_LOCAL_MAX_ROWS:,} and no cluster named: "
                     "in process, no Ray start-up")


def run_encoder(runner: str, corpus: Corpus, config: WorkerConfig, pieces: list[Piece], staging: str, *,
                window: int, known_ids: pa.Array | None = None, dtype: str = "float32",
                ray: RayRunnerOptions = RayRunnerOptions(),
                on_rows: Callable[[int], None] | None = None) -> Iterator[dict]:
    """The receipts of the runner named ``runner`` (``local`` or ``ray``: resolve ``auto`` with
    ``choose_runner`` first); ``ray`` applies to the Ray runner only, ``on_rows`` (rows encoded so
    far, each window as it is done) to the local runner only: Ray's actors report whole pieces."""
    if runner == "local":
        return run_local(corpus, config, pieces, staging, window=window, known_ids=known_ids, dtype=dtype,
                         on_rows=on_rows)
    return run_on_ray(corpus, config, pieces, staging, window=window, known_ids=known_ids, dtype=dtype,
                      workers=ray.workers, address=ray.address, dashboard=ray.dashboard,
                      gpus_per_actor=ray.gpus_per_actor)
