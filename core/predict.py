"""``python -m core.predict``: the command line of `core.cli.predict` (kept at this path, the documented one)."""

from core.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
