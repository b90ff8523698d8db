"""Ray runner: encode pieces (row ranges of corpus files) on a pool of actors over a Ray cluster;
each actor writes its pieces' shards itself, straight to the output's filesystem (a shared path or
an object store), and the driver gets back only receipts (file, rows, sha256, node).

The cluster session (join one, or an embedded local Ray on 127.0.0.1) is ray_cluster.py's job; the
actor pool (sizing, handing out pieces, replacing lost actors) is ray_pool.py's. Ray is imported
only in these three modules.

    >>> for receipt in run_on_ray(corpus, config, pieces, "s3://b/v", window=8192): ...  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...errors import EmbedpipeError, first_line
from ...formats.corpus import Corpus
from ..pieces import Piece
from ..rows import WorkerConfig
from .ray_cluster import ray_session
from .ray_pool import GAVE_UP, ShardWriterPool

ACTOR_DEATHS = {"ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "OutOfMemoryError", "SystemException"}


def run_on_ray(corpus: Corpus, config: WorkerConfig, pieces: list[Piece], staging: str, *, window: int,
               known_ids: pa.Array | None = None, dtype: str = "float32", workers: int | None = None,
               address: str | None = None, dashboard: bool = False, gpus_per_actor: float = 0.0) -> Iterator[dict]:
    """Encode ``pieces`` on an actor pool; yield each piece's receipt as it finishes."""
    if not pieces:
        return
    # Actors are started with max_restarts=0 (the pool replaces dead ones itself), so Ray's
    # "constructor arguments in the object store and max_restarts > 0" false alarm (ray#57733) never fires.
    with ray_session(address, dashboard) as ray:
        pool = ShardWriterPool(ray, config, corpus, staging, dtype=dtype, window=window, workers=workers,
                                gpus_per_actor=gpus_per_actor)
        try:
            known = ray.put(known_ids) if known_ids is not None and any(p.filter_known for p in pieces) else None
            yield from pool.run(pieces, known)
        except ray.exceptions.RayError as e:  # a bad row, an unreadable file, a failure Ray reports
            raise _user_error(e) from None
        finally:
            pool.stop()


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
        return EmbedpipeError(GAVE_UP)
    # Ray may wrap it in an error that keeps only the remote traceback's text.
    marker = f"{EmbedpipeError.__module__}.{EmbedpipeError.__name__}: "
    for line in str(top).splitlines():
        if line.startswith(marker):
            return EmbedpipeError(line[len(marker):])
    return EmbedpipeError(f"encoding failed on Ray: {type(root).__name__}: {first_line(root)}")
