"""``python -m core.bench``: the command line of `core.cli.bench` (kept at this path, the documented one)."""

from core.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
