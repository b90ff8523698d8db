"""The Ray runner's waits read from environment variables named one way (``..._S``, in seconds),
with the names used before that convention still read when the new one is not set."""

import pytest

from embedpipe.encode.runners.timeouts import (
    DEFAULT_ACTOR_START_TIMEOUT_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    actor_start_timeout,
    connect_timeout,
)
from embedpipe.errors import EmbedpipeError

WAITS = [(connect_timeout, "EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", "EMBEDPIPE_RAY_CONNECT_TIMEOUT",
          DEFAULT_CONNECT_TIMEOUT_S),
         (actor_start_timeout, "EMBEDPIPE_RAY_ACTOR_START_TIMEOUT_S", "EMBEDPIPE_RAY_START_TIMEOUT_S",
          DEFAULT_ACTOR_START_TIMEOUT_S)]


@pytest.fixture(autouse=True)
def no_waits_set(monkeypatch):
    for _, name, old, _ in WAITS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(old, raising=False)


def test_the_defaults_are_the_documented_ones():
    assert (connect_timeout(), actor_start_timeout()) == (15.0, 120.0)


@pytest.mark.parametrize("wait, name, old, default", WAITS)
def test_the_new_name_is_read_and_wins_over_the_old(wait, name, old, default, monkeypatch):
    monkeypatch.setenv(old, "7")
    assert wait() == 7.0                     # only the old name set: still honoured
    monkeypatch.setenv(name, "2.5")
    assert wait() == 2.5                     # both set: the new name wins
    monkeypatch.setenv(name, "0")
    assert wait() == default                 # not above 0: the default, as before


@pytest.mark.parametrize("wait, name, old, default", WAITS)
def test_a_value_that_is_not_seconds_names_the_variable(wait, name, old, default, monkeypatch):
    monkeypatch.setenv(old, "soon")
    with pytest.raises(EmbedpipeError, match=f"\\${old} must be a number of seconds, got 'soon'"):
        wait()
    monkeypatch.setenv(name, "2 minutes")
    with pytest.raises(EmbedpipeError, match=f"\\${name} must be a number of seconds"):
        wait()
    for endless in ("inf", "nan", "-inf"):      # a wait with no end is the hang the bound prevents
        monkeypatch.setenv(name, endless)
        with pytest.raises(EmbedpipeError, match=f"\\${name} must be a number of seconds, got '{endless}'"):
            wait()
