"""``python -m privsynth``: the same command-line tool as ``privsynth`` (useful where the script is not on PATH)."""

from privsynth.cli import entry_point

if __name__ == "__main__":
    entry_point()
