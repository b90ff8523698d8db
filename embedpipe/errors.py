"""The one exception type the CLI turns into a clear one-line message."""


class EmbedpipeError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Library code raises this (never prints and returns None); the CLI shows
    ``Error: <message>`` and exits non-zero, without a traceback.
    """


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
