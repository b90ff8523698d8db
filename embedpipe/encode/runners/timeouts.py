"""How long the Ray runner waits, each wait settable in seconds by an environment variable.

    $EMBEDPIPE_RAY_CONNECT_TIMEOUT_S      15   for a named cluster's head to answer (ray_cluster.py)
    $EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S  120  for the first encoder actor to start (ray_pool.py)

Every name ends in ``_S``, the unit. Names used before that convention are still read when the new
one is not set, so a deployment that sets them keeps working:

    >>> env_seconds("EMBEDPIPE_NOT_SET_S", 2.5)
    2.5
"""

from __future__ import annotations

import math
import os

from ...errors import EmbedpipeError

DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_ACTOR_START_TIMEOUT_S = 120.0


def env_seconds(name: str, default: float, old_name: str | None = None) -> float:
    """Seconds from ``$name`` (else ``$old_name``); ``default`` when neither is set or the value is
    not above 0; an error naming the variable when it is not a finite number (``inf`` would be a wait
    with no end: the hang these bounds exist to prevent)."""
    used = name if os.environ.get(name) or not old_name else old_name
    raw = os.environ.get(used)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise EmbedpipeError(f"${used} must be a number of seconds, got {raw!r}")
    return value if value > 0 else default


def connect_timeout() -> float:
    """Seconds to wait for a named Ray cluster to answer before giving up with one line."""
    return env_seconds("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S,
                       old_name="EMBEDPIPE_RAY_CONNECT_TIMEOUT")


def actor_start_timeout() -> float:
    """Seconds the actor pool waits with pieces queued and no actor started (the cluster has no
    room for one) before giving up with one line."""
    return env_seconds("EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S", DEFAULT_ACTOR_START_TIMEOUT_S,
                       old_name="EMBEDPIPE_RAY_START_TIMEOUT_S")
