"""Models loaded once per process and kept: the model worker's cache (one per weights folder)."""

from __future__ import annotations

from pathlib import Path

from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel

_RESIDENT: dict[tuple[str, Path], ScanModel] = {}


def installed(name: str) -> bool:
    """Whether the model is loaded here or has a card in weights/ (no card is parsed: this runs per request)."""
    return (name, WEIGHTS_DIR) in _RESIDENT or (WEIGHTS_DIR / f"{name}.json").is_file()


def resident_model(name: str, weights_dir: Path = WEIGHTS_DIR) -> ScanModel:
    """The model `name` (of `weights_dir`), loaded once per process (sha256-checked through its card)."""
    key = (name, Path(weights_dir))
    if key not in _RESIDENT:
        _RESIDENT[key] = ScanModel.load(name, weights_dir)
    return _RESIDENT[key]


def load_every_model() -> list[str]:
    """Load every committed model into this process (what a long-running server ends up holding)."""
    from core.models.scan_model import available_models

    return [resident_model(name).name for name in available_models()]
