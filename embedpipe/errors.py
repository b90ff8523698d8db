"""The one exception type the CLI turns into a clear one-line message."""


class EmbedpipeError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Library code raises this (never prints and returns None); the CLI shows
    ``Error: <message>`` and exits non-zero, without a traceback.
    """
