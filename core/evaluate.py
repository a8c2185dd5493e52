"""``python -m core.evaluate``: the command line of `core.cli.evaluate` (kept at this path, the documented one)."""

from core.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
