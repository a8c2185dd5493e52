"""The CT tasks' cards: the infection segmenter (`ct-infection`) and the lung outline (`ct-lungs`). Data:
`core.data.ct`; training: `core.training.ct`; checks: `core.checks.ct`; the lung geometry: `core.transforms.lungs`."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.cards import InputSpec, ModelCard


def segmentation_card(name: str, size: int, **fields) -> ModelCard:
    """A card for a CT segmenter at `size` px (the preprocessing both CT networks share); `fields` say the rest."""
    return ModelCard(
        name=name, task="segmentation", modality="ct", weights=f"{name}.keras",
        input=InputSpec(height=size, width=size, channels=3),
        preprocessing=[{"name": "resize", "size": [size, size]}, {"name": "normalise"}], cam_layer="", **fields,
    )  # fmt: skip


def infection_card(size: int) -> ModelCard:
    return segmentation_card(
        "ct-infection",
        size,
        title="CT: COVID-19 lung infection segmentation",
        classes=["infection"],
        description="Axial chest CT slice -> infected-lung mask (ground-glass opacity and consolidation together).",
        limits=[
            "Trained on 42 radiologist-labelled slices (MedSeg) as 8-bit images without Hounsfield units.",
            "A teaching and demo tool, not a diagnosis.",
        ],
    )


def lung_card(size: int) -> ModelCard:
    return segmentation_card(
        "ct-lungs",
        size,
        title="CT: lung outline (for the infected share)",
        classes=["lung"],
        description="Axial chest CT slice -> both lungs, consolidated lung included; used for the infected share.",
        deployed=False,
        variant="lungs",
        limits=[
            "Trained on pseudo-labels (dark lung joined with the radiologists' infection masks of 42 slices), "
            "not on lung masks drawn by a radiologist: judge its outlines in the gallery that `python -m core.evaluate "
            "ct-lungs` draws (not shipped: it is made from the CT test slices).",
            "A teaching and demo tool, not a diagnosis.",
        ],
        data={"labels": "pseudo-labels: core.transforms.lungs.pseudo_lungs(slice, radiologists' infection mask)"},
    )


def computed_lungs(lung_model: Any, pixels: np.ndarray, infection: np.ndarray) -> np.ndarray:
    """The lungs of a CT slice as the app and the checks draw them: the lung network (a `ScanModel` of `ct-lungs`)
    with its card's mask threshold and outline margin, joined with the infection mask."""
    return outline_by_card(lung_model.card, lung_model.segment(pixels), infection)


def outline_by_card(
    card: ModelCard, lung_probability: np.ndarray, infection: np.ndarray, margin: float | None = None
) -> np.ndarray:
    """`lung_outline` with the lung card's mask threshold and its outline margin (or `margin`, when tuning it)."""
    from core.transforms.lungs import lung_outline

    if margin is None:
        margin = float(card.decision_rule.get("outline_margin", 0.0))
    return lung_outline(lung_probability, infection, card.mask_threshold or 0.5, margin)
