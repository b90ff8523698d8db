"""``python -m embedpipe`` runs the CLI."""

from .cli import main

main()
