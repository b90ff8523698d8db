"""Field checks that config dataclasses run in ``__post_init__``, so a config checks itself when it
is built: from Python, from a YAML spec, from ``--set`` and from the CLI alike, with one message.

    >>> at_least("rows_per_shard", 0, 1)
    Traceback (most recent call last):
    embedpipe.errors.ConfigError: rows_per_shard must be an integer of at least 1, got 0
    >>> one_of("runner", "ray", ("ray", "local"))
    'ray'

A field with a fixed set of values is declared with ``choice``, which is the one place its choices and
default are written: ``declared_choices`` checks it, and the CLI builds the option from it
(``cli/options.py: from_config``), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Sequence

from .errors import ConfigError, EmbedpipeError


def at_least(field: str, value, low: int, *, optional: bool = False) -> int | None:
    """An integer >= ``low`` (None too when ``optional``); bools and floats are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "null or an integer" if optional else "an integer"
        raise ConfigError(field, f"must be {kind} of at least {low}, got {value!r}")
    return value


def number_in(field: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    """A real number within [low, high] (an end excluded when ``*_open``)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(field, f"must be a number in {interval}, got {value!r}")
    return value


def one_of(field: str, value, choices: Sequence, *, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in choices:
        extra = " or null" if optional else ""
        raise ConfigError(field, f"must be one of {', '.join(map(str, choices))}{extra}, got {value!r}")
    return value


def choice(default, choices: Sequence, *, optional: bool = False):
    """A dataclass field whose value must be one of ``choices`` (or None when ``optional``).

    >>> @dataclasses.dataclass
    ... class Job:
    ...     runner: str = choice("auto", ("auto", "local"))
    ...     def __post_init__(self):
    ...         declared_choices(self)
    >>> choices_of(Job, "runner"), default_of(Job, "runner")
    (('auto', 'local'), 'auto')
    >>> Job(runner="ray")
    Traceback (most recent call last):
    embedpipe.errors.ConfigError: runner must be one of auto, local, got 'ray'
    """
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "optional": optional})


def names_from(default: tuple[str, ...] | None, choices: Sequence):
    """A dataclass field holding a list of names, each one of ``choices`` (the config checks the list
    itself, with its own rules on emptiness and order); the CLI takes it comma-separated."""
    return dataclasses.field(default=default, metadata={"each_of": tuple(choices)})


def declared_choices(config) -> None:
    """Check every field of ``config`` declared with ``choice``."""
    for f in dataclasses.fields(config):
        if "choices" in f.metadata:
            one_of(f.name, getattr(config, f.name), f.metadata["choices"], optional=f.metadata["optional"])


def choices_of(config, name: str) -> tuple | None:
    """The choices of a field declared with ``choice``; None for any other field or a function's argument."""
    return _field(config, name).metadata.get("choices") if dataclasses.is_dataclass(config) else None


def each_of(config, name: str) -> tuple | None:
    """The names each item of a ``names_from`` field may be; None for any other field."""
    return _field(config, name).metadata.get("each_of") if dataclasses.is_dataclass(config) else None


def default_of(config, name: str):
    """A dataclass field's default (its default_factory called, for a mutable one), or a function's
    keyword argument's default: where a library call without a config class keeps its defaults."""
    if not dataclasses.is_dataclass(config):
        parameter = inspect.signature(config).parameters.get(name)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{config.__name__} has no argument {name!r} with a default")
        return parameter.default
    f = _field(config, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{config.__name__}.{name} has no default")


def _field(config_class, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(config_class):
        if f.name == name:
            return f
    raise TypeError(f"{config_class.__name__} has no field {name!r}")


def boolean(field: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be true or false, got {value!r}")
    return value


def text(field: str, value, *, optional: bool = False) -> str | None:
    """A non-blank string (a path, a column name, a model name)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(field, f"must be a non-empty {'string or null' if optional else 'string'}, got {value!r}")
    return value


def path(field: str, value, *, optional: bool = False):
    """A local path or URL, as a string or an ``os.PathLike``."""
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return text(field, value, optional=optional)


def distinct_columns(first: tuple[str, object], second: tuple[str, object]) -> None:
    """Two column-name fields, as (field, value): each a non-blank string, and not the same column.

    >>> distinct_columns(("text_column", "text"), ("id_column", "text"))
    Traceback (most recent call last):
    embedpipe.errors.ConfigError: text_column must differ from id_column (both 'text')
    """
    (field_a, a), (field_b, b) = first, second
    text(field_a, a)
    text(field_b, b)
    if a == b:
        raise ConfigError(field_a, f"must differ from {field_b} (both {a!r})")


def training(options) -> None:
    """The fields every trained head's options share (MlpOptions, FinetuneOptions): epochs, batch_size,
    AdamW's lr and weight_decay, and dropout."""
    at_least("epochs", options.epochs, 1)
    at_least("batch_size", options.batch_size, 1)
    number_in("lr", options.lr, 0.0, 1.0, low_open=True)
    number_in("weight_decay", options.weight_decay, 0.0, 1.0)
    number_in("dropout", options.dropout, 0.0, 1.0, high_open=True)


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
