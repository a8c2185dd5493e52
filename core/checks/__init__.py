"""Measurements: metrics, the evaluations behind `python -m core.evaluate`, the shortcut and localisation checks, the
K-fold preprocessing study, and picking what to deploy."""
