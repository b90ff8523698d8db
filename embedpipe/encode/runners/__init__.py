"""Runners map a ``CorpusBatchEncoder`` over a corpus and yield (id, vector, truncated) tables in
corpus order.

``local`` runs it in this process; ``ray`` runs an actor pool over a Ray Data dataset (Ray is
imported only there). Both yield the same tables, so the writer downstream cannot tell them apart;
``run_encoder`` picks one by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from ...formats.corpus import Corpus
from ..mapper import MapperConfig
from .local import run_local
from .ray import run_on_ray

RUNNERS = ("ray", "local")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None   # join this cluster; None = start an embedded local Ray on 127.0.0.1
    workers: int | None = None   # encoder actors; None = one per `threads` CPUs of the cluster
    dashboard: bool = False      # embedded local Ray only: start its dashboard (on 127.0.0.1)


def run_encoder(runner: str, corpus: Corpus, config: MapperConfig, *, window: int, skip_ids: pa.Array | None,
                ray: RayOptions = RayOptions()) -> Iterator[pa.Table]:
    """The tables of the runner named ``runner`` (one of RUNNERS); ``ray`` applies to the Ray runner only."""
    if runner == "local":
        return run_local(corpus, config, window=window, skip_ids=skip_ids)
    return run_on_ray(corpus, config, window=window, workers=ray.workers, address=ray.address, skip_ids=skip_ids,
                      dashboard=ray.dashboard)
