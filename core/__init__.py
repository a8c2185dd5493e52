"""ScanSight core: everything worth testing, importable without Streamlit.

`core.runtime` is imported first, so TensorFlow's runtime settings are in the environment before any module
imports TensorFlow."""

from core import runtime as _runtime  # noqa: F401  (sets the TensorFlow environment; must stay first)
