"""Encoder actors on GPUs: how many fit the cluster's GPUs at ``gpus_per_actor`` each.

    >>> gpu_actor_count([1.0, 0.0, 2.0], 0.5, None)     # a GPU node, a CPU node, a two-GPU node
    6
    >>> gpu_actor_count([0.0], 1, None)                   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    embedpipe.errors.EmbedpipeError: gpus_per_actor 1 asks for GPUs, but the Ray cluster has none...

Ray places each actor (``num_gpus=gpus_per_actor``, fractional allowed: 0.5 puts two actors on a
GPU) on a node with that much GPU left, so on a cluster of GPU and CPU nodes the encoders go to the
GPUs. The count is fixed at the start: an actor lost with its node is replaced as a CPU actor is,
when a GPU has room for it again.
"""

from __future__ import annotations

from ...errors import EmbedpipeError


def node_gpus(ray) -> list[float]:
    """The GPUs of each node of the cluster that is alive now."""
    return [n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")]


def gpu_actor_count(gpus: list[float], gpus_per_actor: float, workers: int | None) -> int:
    """Actors of ``gpus_per_actor`` GPUs each that the nodes' ``gpus`` hold (``workers``, if given,
    must fit: an actor waiting for a GPU that never frees would wait forever)."""
    fitting = sum(int(g / gpus_per_actor + 1e-9) for g in gpus)
    if fitting == 0:
        raise EmbedpipeError(f"gpus_per_actor {gpus_per_actor:g} asks for GPUs, but the Ray cluster has none that "
                             f"hold that much (nodes' GPUs: {', '.join(f'{g:g}' for g in gpus) or 'none'}); "
                             "use gpus_per_actor 0 to encode on CPUs")
    if workers is not None and workers > fitting:
        raise EmbedpipeError(f"workers {workers} at gpus_per_actor {gpus_per_actor:g} do not fit the cluster's GPUs "
                             f"({', '.join(f'{g:g}' for g in gpus)}): at most {fitting}")
    return workers or fitting
