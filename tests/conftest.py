"""Shared test setup. `core` first: its `core.runtime` sets TensorFlow's environment before anything imports it.

Fixtures used by more than one test module live here; plain builders (images, files, data sets, models) are in
helpers.py. Test modules never import each other (test_architecture checks it)."""

from __future__ import annotations

import core  # noqa: F401  (must stay the first project import: TensorFlow's runtime settings)

# isort: split
from pathlib import Path

import pytest

from tests.helpers import make_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The untrained tiny chest classifier ("tiny"), loaded through its card; one per test module."""
    from core.models.scan_model import ScanModel

    folder = tmp_path_factory.mktemp("tiny-weights")
    make_model(folder)
    return ScanModel.load("tiny", folder)


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """A weights folder of this test's own holding only the tiny classifier, as the "pneumonia" model."""
    folder = tmp_path / "weights"
    folder.mkdir()
    make_model(folder, name="pneumonia")
    return folder


@pytest.fixture(scope="session")
def gate_model():
    """The committed out-of-distribution gate, or None when weights/ has none (tests that need it skip)."""
    from core.models.cards import list_cards
    from core.models.scan_model import ScanModel

    return ScanModel.load("gate") if "gate" in list_cards() else None
