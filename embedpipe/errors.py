"""The errors embedpipe raises on purpose: one line each, naming what is wrong and what to change.

    BadInput         something a user gave is wrong: a corpus, a qrels file, a path that is also the output
    ConfigError      a config field holds a value outside its range (names the field)
    CorruptArtifact  an embedpipe output (vectors, index, export, classifier) changed or is damaged

A message names config *fields* (``overwrite``, ``rows_per_shard``), not command-line flags, because
the same library runs from Python, a YAML spec and the CLI; a setting to change is written
``field=value``. Each front end shows fields its own way through ``render``: the CLI as
``--rows-per-shard`` and ``--empty-text skip``, a pipeline spec as ``encode.rows_per_shard``.

    >>> e = BadInput("2 blank texts; set empty_text=skip to leave them out", fields=("empty_text",))
    >>> e.render(lambda field, value: "--" + field.replace("_", "-") + (f" {value}" if value else ""))
    '2 blank texts; set --empty-text skip to leave them out'
    >>> str(ConfigError("rows_per_shard", "must be at least 1, got 0"))
    'rows_per_shard must be at least 1, got 0'
"""

from __future__ import annotations

import re
from collections.abc import Callable


class EmbedpipeError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Library code raises this (never prints and returns None); the CLI shows ``Error: <message>``
    and exits non-zero, without a traceback. ``fields`` are the config field names the message
    mentions, for ``render``.
    """

    def __init__(self, message: str = "", *, fields: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.fields = tuple(fields)

    def render(self, name_of: Callable[[str, str | None], str]) -> str:
        """The message with each mentioned field (``field`` or ``field=value``) shown as
        ``name_of(field, value)``: a flag, a spec key."""
        text = str(self)
        for field in self.fields:
            text = re.sub(rf"(?<![\w.-]){re.escape(field)}(?:=([\w.-]+))?(?![\w-])",
                          lambda match, field=field: name_of(field, match.group(1)), text)
        return text


class BadInput(EmbedpipeError):
    """Input data or a path the user gave cannot be used as it is."""


class ConfigError(EmbedpipeError, ValueError):
    """A config field holds a value it may not hold; raised when the config is built."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}", fields=(field,))
        self.field = field


class CorruptArtifact(EmbedpipeError):
    """An embedpipe output does not match what its own manifest or description says."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
