"""What every command shares: library errors become click's one-line error."""

from __future__ import annotations

import functools

import click

from .errors import EmbedpipeError


def user_errors(fn):
    """Turn an EmbedpipeError into ``Error: <message>`` and exit code 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmbedpipeError as e:
            raise click.ClickException(str(e)) from None

    return wrapper
