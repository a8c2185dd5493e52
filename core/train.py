"""``python -m core.train``: the command line of `core.cli.train` (kept at this path, the documented one)."""

from core.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
