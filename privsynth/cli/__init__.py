"""Command-line interface: ``privsynth --help``."""

from privsynth.cli.app import app, entry_point, main

__all__ = ["app", "entry_point", "main"]
