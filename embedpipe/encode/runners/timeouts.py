"""How long the Ray runner waits, each wait settable in seconds by an environment variable.

    $EMBEDPIPE_RAY_CONNECT_TIMEOUT_S      15   for a named cluster's head to answer (ray_cluster.py)
    $EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S  120  for the first encoder actor to start (ray_pool.py)

Every name ends in ``_S``, the unit. Names used before that convention are still read when the new
one is not set, so a deployment that sets them keeps working:

    >>> env_seconds("EMBEDPIPE_NOT_SET_S", 2.5)
    2.5
"""

from __future__ import annotations

from ...checks import env_seconds

DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_ACTOR_START_TIMEOUT_S = 120.0


def connect_timeout() -> float:
    """Seconds to wait for a named Ray cluster to answer before giving up with one line."""
    return env_seconds("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S,
                       old_name="EMBEDPIPE_RAY_CONNECT_TIMEOUT")


def actor_start_timeout() -> float:
    """Seconds the actor pool waits with pieces queued and no actor started (the cluster has no
    room for one) before giving up with one line."""
    return env_seconds("EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S", DEFAULT_ACTOR_START_TIMEOUT_S,
                       old_name="EMBEDPIPE_RAY_START_TIMEOUT_S")
