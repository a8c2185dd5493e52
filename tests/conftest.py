"""Shared test setup. `core` first: its `core.runtime` sets TensorFlow's environment before anything imports it."""

from __future__ import annotations

import core  # noqa: F401  (must stay the first project import: TensorFlow's runtime settings)
