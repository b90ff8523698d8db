"""Runners map a ``CorpusBatchEncoder`` over a corpus and yield (id, vector) tables in corpus order.

``local`` runs it in this process; ``ray`` runs an actor pool over a Ray Data dataset. Both take
the same arguments and yield the same tables, so the writer downstream cannot tell them apart.
"""

from .local import run_local
from .ray_runner import run_on_ray

RUNNERS = {"local": run_local, "ray": run_on_ray}
