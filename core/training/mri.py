"""Brain MRI training: `mri-segmentation` (a U-Net on the ImageNet Lite0 encoder, or the ResUNet; Dice + BCE) and
`mri-tumour` (a segmenter's encoder, fine-tuned).

Patients are split train / validation / test by a fixed seed (never by slice); the mask threshold,
decision threshold and temperature are chosen on validation patients only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.metrics import dice
from core.data.mri import MriPatient, list_patients, read_mask, read_slice, resize_mask, split_patients
from core.models.cards import InputSpec, ModelCard
from core.models.networks import build_segmenter, classifier_from_encoder, encoder_end
from core.models.scan_model import ScanModel
from core.training.loops import (
    FitSettings,
    balanced_class_weights,
    calibrate,
    export_with_card,
    fit_classifier,
    fit_segmenter,
    history_fields,
)
from core.transforms.augment import augment_pairs

GREY_INPUT_NOTE = (
    "Trained on the 3-channel stack (pre-contrast, FLAIR, post-contrast); in 30% of training batches the "
    "FLAIR channel replaced all three, so a single grey slice (PNG or DICOM) is repeated on 3 channels and works."
)


def mri_preprocessing(size: int) -> list[dict[str, Any]]:
    """Resize, then stretch each sequence (channel) on its own: a dark FLAIR must not stay dark."""
    return [{"name": "resize", "size": [size, size]}, {"name": "normalise", "per_channel": True}]


def load_patients(
    patients: Sequence[MriPatient], prepare: Callable[[np.ndarray], np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images N x S x S x 3, masks N x S x S x 1 float, patient index per slice)."""
    from tqdm import tqdm

    images, masks, owners = [], [], []
    for number, patient in enumerate(tqdm(patients, desc="loading patients", unit="patient")):
        for item in patient.slices:
            pixels = read_slice(item.image)
            images.append(prepare(pixels))
            masks.append(resize_mask(read_mask(item.mask, pixels.shape[:2]), (size, size)))
            owners.append(number)
    return (
        np.stack(images).astype(np.float32),
        np.stack(masks)[..., np.newaxis].astype(np.float32),
        np.array(owners),
    )


def patient_dice(probabilities: np.ndarray, masks: np.ndarray, owners: np.ndarray, threshold: float) -> list[float]:
    """Dice over each patient's whole volume (as Buda et al.)."""
    predicted = probabilities >= threshold
    truth = masks >= 0.5
    return [dice(predicted[owners == p], truth[owners == p]) for p in np.unique(owners)]


def _split_info(train, validation, test, seed: int) -> dict[str, Any]:
    return {
        "source": "LGG brain MRI (Buda et al. 2019, TCGA), lgg_mri/",
        "split": f"by patient, seed {seed}: 70% train / 10% validation / 20% test; never by slice",
        "n_patients_train": len(train),
        "n_patients_validation": len(validation),
        "n_patients_test": len(test),
        "n_slices_train": sum(len(p.slices) for p in train),
        "n_slices_validation": sum(len(p.slices) for p in validation),
        "validation_patients": [p.patient_id for p in validation],
        "test_patients": [p.patient_id for p in test],
    }


def train_segmentation(
    data_dir: Path,
    out_dir: Path,
    size: int = 128,
    epochs: int = 40,
    batch_size: int = 16,
    patience: int = 8,
    learning_rate: float = 2e-3,
    seed: int = 0,
    widths: Sequence[int] = (8, 16, 32, 64, 128),
    limit: int | None = None,
    log: Callable[[str], None] = print,
    architecture: str = "resunet",
    encoder_blocks: int = 11,
    resume: bool = False,
    dice_loss: str = "batch",
) -> ModelCard:
    """Train the tumour segmenter: the ResUNet (`widths`), or with `architecture` "lite0-unet" a U-Net on the
    first `encoder_blocks` blocks of the EfficientNet-Lite0 encoder from ImageNet (the three MRI sequences fill
    its three input channels)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patients = list_patients(data_dir)
    train, validation, test = split_patients(patients, seed)
    if limit:
        train, validation = train[:limit], validation[: max(1, limit // 4)]
    log(f"mri-segmentation: {len(patients)} patients -> train {len(train)} / val {len(validation)} / test {len(test)}")

    card = ModelCard(
        name="mri-segmentation",
        task="segmentation",
        title="Brain MRI: FLAIR abnormality (tumour) segmentation",
        modality="brain-mri",
        weights="mri-segmentation.keras",
        classes=["tumour"],
        input=InputSpec(height=size, width=size, channels=3),
        preprocessing=mri_preprocessing(size),
        description="Axial brain MRI slice -> tumour mask, resized back to the slice's size. " + GREY_INPUT_NOTE,
        cam_layer="",
        limits=[
            "Lower-grade gliomas from TCGA (5 institutions); other tumour types and sequences are outside its data.",
            "Masks follow FLAIR abnormality, not enhancing tumour. A teaching and demo tool, not a diagnosis.",
        ],
    )
    preparer = ScanModel(card, None)
    x_train, y_train, _ = load_patients(train, preparer.prepare, size)
    x_val, y_val, owners_val = load_patients(validation, preparer.prepare, size)
    log(
        f"slices: train {len(x_train)} ({int((y_train.reshape(len(y_train), -1).max(1) > 0).sum())} with tumour), "
        f"validation {len(x_val)}"
    )

    model, description = build_segmenter(architecture, size, widths, encoder_blocks, "mri")
    has_tumour = y_train.reshape(len(y_train), -1).max(axis=1) > 0
    # Balanced epochs: every tumour slice once, and as many slices without tumour drawn at random.
    steps = int(np.ceil(2 * has_tumour.sum() / batch_size))
    log(f"model: {description}, input {size}x{size}x3")
    augment = augment_pairs(seed)

    def stream(selector: np.ndarray, offset: int):
        part = tf.data.Dataset.from_tensor_slices((x_train[selector], y_train[selector]))
        return part.shuffle(int(selector.sum()), seed=seed + offset).repeat()

    batches = (
        tf.data.Dataset.sample_from_datasets([stream(has_tumour, 0), stream(~has_tumour, 1)], [0.5, 0.5], seed=seed)
        .batch(batch_size)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    checkpoint = out_dir / ".checkpoints" / "mri-segmentation.keras"
    settings = FitSettings(epochs, batch_size, learning_rate, patience, seed, checkpoint, resume)
    masks_val = y_val[..., 0]
    fit = fit_segmenter(
        model, batches, steps, x_val,
        lambda probabilities, t: float(np.mean(patient_dice(probabilities, masks_val, owners_val, t))),
        settings, log, metric="per-patient Dice", dice=dice_loss,
    )  # fmt: skip
    card.mask_threshold, validation_dice = fit.mask_threshold, fit.validation_dice
    card.threshold_method = "mask threshold maximising mean per-patient Dice on the validation patients"
    card.architecture = description
    card.data = _split_info(train, validation, test, seed)
    card.training = history_fields(
        fit.best, settings, started,
        sampling="balanced epochs: each tumour slice once + as many random slices without tumour",
        loss="binary cross-entropy + (1 - soft Dice" + (" per slice, averaged)" if dice_loss == "per-slice" else ")"),
        augmentation="horizontal flip, rotation +-14 deg, zoom +-10%, shift +-5%, contrast +-20%, FLAIR-only input 30%",
    )  # fmt: skip
    card.metrics = {
        "validation": {
            "n_patients": len(validation),
            "dice_mean": validation_dice,
            "resolution": f"{size}x{size} (model grid)",
        }
    }
    export_with_card(model, card, out_dir, log)
    log(f"validation Dice {validation_dice:.4f} at mask threshold {card.mask_threshold}")
    return card


def train_tumour(
    data_dir: Path,
    out_dir: Path,
    segmentation_card: Path,
    epochs: int = 15,
    batch_size: int = 32,
    patience: int = 5,
    learning_rate: float = 5e-4,
    seed: int = 0,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Slice-level tumour yes/no: the trained segmenter's encoder plus a new head, all fine-tuned."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    started = time.time()
    out_dir = Path(out_dir)
    segmenter = ScanModel.load(ModelCard.load(segmentation_card))
    size = segmenter.card.input.height
    patients = list_patients(data_dir)
    # The encoder has seen the segmentation model's training patients: reuse its split exactly, so the
    # tumour model's validation and test patients are ones the encoder never trained on.
    held_out = {part: set(segmenter.card.data.get(f"{part}_patients", [])) for part in ("validation", "test")}
    if not held_out["test"]:
        raise ValueError("the segmentation card lists no test patients; retrain mri-segmentation first")
    validation = [p for p in patients if p.patient_id in held_out["validation"]]
    test = [p for p in patients if p.patient_id in held_out["test"]]
    train = [p for p in patients if p.patient_id not in held_out["validation"] | held_out["test"]]
    assert not held_out["validation"] & held_out["test"]
    if limit:
        train = train[:limit]
    card = ModelCard(
        name="mri-tumour",
        task="mri-tumour",
        title="Brain MRI: tumour (FLAIR abnormality) present on this slice?",
        modality="brain-mri",
        weights="mri-tumour.keras",
        classes=["NO_TUMOUR", "TUMOUR"],
        positive_class="TUMOUR",
        input=InputSpec(height=size, width=size, channels=3),
        preprocessing=list(segmenter.card.preprocessing),
        description="Axial brain MRI slice -> probability that it shows a tumour. " + GREY_INPUT_NOTE,
        limits=list(segmenter.card.limits),
    )
    preparer = ScanModel(card, None)
    x_train, m_train, _ = load_patients(train, preparer.prepare, size)
    x_val, m_val, _ = load_patients(validation, preparer.prepare, size)
    y_train = (m_train.reshape(len(m_train), -1).max(axis=1) > 0).astype(int)
    y_val = (m_val.reshape(len(m_val), -1).max(axis=1) > 0).astype(int)
    log(f"mri-tumour: train {len(x_train)} slices ({y_train.sum()} with tumour), validation {len(x_val)}")

    model = classifier_from_encoder(segmenter.keras_model, 2, name="mri_tumour_encoder")
    card.cam_layer = encoder_end(segmenter.keras_model)
    augment = augment_pairs(seed)
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, m_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(batch_size)
        .map(lambda x, m, y: (augment(x, m)[0], y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    settings = FitSettings(epochs, batch_size, learning_rate, patience, seed)
    steps = int(np.ceil(len(x_train) / batch_size))
    fit = fit_classifier(model, batches, steps, x_val, y_val, 2, settings, log,
                         class_weight=balanced_class_weights(y_train, 2))  # fmt: skip
    validation_metrics = calibrate(card, fit.logits, y_val, "validation patients")
    card.threshold_method = "Youden's J on the validation patients' slices"
    card.architecture = (
        f"encoder of the mri-segmentation network ({segmenter.card.architecture.split(';')[0]}), initialised from its "
        "trained weights (transfer from segmentation), + global average pooling + dropout + dense logits, all "
        f"fine-tuned; {model.count_params():,} parameters"
    )
    card.data = _split_info(train, validation, test, seed)
    card.training = history_fields(
        fit.best, settings, started,
        init="mri-segmentation encoder weights", loss="cross-entropy with balanced class weights",
    )  # fmt: skip
    card.metrics = {"validation": validation_metrics}
    export_with_card(model, card, out_dir, log)
    log(f"validation AUC {validation_metrics['auc']:.4f}")
    return card


MIN_VOXEL_GRID = (0, 25, 50, 100, 200, 400, 800)


def patient_masks(model: ScanModel, patients: Sequence[MriPatient], flip: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probabilities N x H x W at the slices' size, truth masks) per patient, with or without the test-time flip."""
    out = []
    for patient in patients:
        pixels = [read_slice(item.image) for item in patient.slices]
        truth = np.stack([read_mask(item.mask, p.shape[:2]) for item, p in zip(patient.slices, pixels, strict=True)])
        out.append((np.stack(model.segment_many(pixels, flip=flip)), truth))
    return out


def tune_postprocessing(card_path: Path, data_dir: Path, log: Callable[[str], None] = print) -> ModelCard:
    """Choose, on the validation patients only, the mask threshold, the test-time flip and the smallest 3-D
    component kept (per-patient Dice over whole volumes); write the choice and the grid into the card."""
    from core.tasks.mri_study import remove_small_components

    card = ModelCard.load(card_path)
    model = ScanModel.load(card)
    wanted = set(card.data.get("validation_patients", []))
    validation = [p for p in list_patients(data_dir) if p.patient_id in wanted]
    if not validation:
        raise ValueError("the card lists no validation patients found under the data folder")
    grid = []
    for flip in (False, True):
        volumes = patient_masks(model, validation, flip)
        for threshold in [round(0.2 + 0.05 * step, 2) for step in range(13)]:
            for min_voxels in MIN_VOXEL_GRID:
                scores = [dice(remove_small_components(p >= threshold, min_voxels), t) for p, t in volumes]
                grid.append({"flip": flip, "mask_threshold": threshold, "min_component_voxels": min_voxels,
                             "dice_mean": float(np.mean(scores)), "dice_median": float(np.median(scores))})  # fmt: skip
    best = max(grid, key=lambda row: (round(row["dice_mean"], 4), -row["min_component_voxels"], not row["flip"]))
    plain = next(r for r in grid if not r["flip"] and r["min_component_voxels"] == 0
                 and r["mask_threshold"] == card.mask_threshold)  # fmt: skip
    card.mask_threshold = best["mask_threshold"]
    card.test_time_flip = best["flip"]
    card.min_component_voxels = best["min_component_voxels"]
    card.threshold_method = (
        "mask threshold, test-time horizontal flip and the smallest 3-D connected component kept, chosen together "
        "to maximise mean per-patient Dice on the validation patients (python -m core.train mri-segmentation "
        "--tune-only)"
    )
    card.metrics.setdefault("validation", {})
    card.metrics["validation"].update(
        {"dice_mean": best["dice_mean"], "dice_median": best["dice_median"],
         "dice_mean_without_postprocessing": plain["dice_mean"],
         "postprocessing_grid_best_10": sorted(grid, key=lambda r: -r["dice_mean"])[:10]}
    )  # fmt: skip
    card.save()
    log(
        f"validation Dice {plain['dice_mean']:.4f} (threshold {plain['mask_threshold']}, no flip, no filter) -> "
        f"{best['dice_mean']:.4f} (threshold {best['mask_threshold']}, flip {best['flip']}, "
        f"components >= {best['min_component_voxels']} voxels)"
    )
    return card


MASK_PIXEL_GRID = (1, 10, 25, 50, 100, 200, 400, 800)


def slice_scores(
    tumour: ScanModel, segmenter: ScanModel, patients: Sequence[MriPatient]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: classifier P(tumour), predicted mask pixels (at the slice's size), truth, patient index."""
    probabilities, areas, truth, owners = [], [], [], []
    threshold = float(segmenter.card.mask_threshold or 0.5)
    for number, patient in enumerate(patients):
        pixels = [read_slice(item.image) for item in patient.slices]
        truth += [bool(read_mask(item.mask, p.shape[:2]).any()) for item, p in zip(patient.slices, pixels, strict=True)]
        batch = np.stack([tumour.prepare(p) for p in pixels])
        probabilities += tumour.probabilities(batch)[:, tumour.card.positive_index].tolist()
        areas += [int((m >= threshold).sum()) for m in segmenter.segment_many(pixels)]
        owners += [number] * len(pixels)
    return np.array(probabilities), np.array(areas), np.array(truth), np.array(owners)


def tune_tumour_rule(
    tumour_card: Path, segmentation_card: Path, data_dir: Path, log: Callable[[str], None] = print
) -> ModelCard:
    """Choose how the slice-level tumour answer combines the classifier and the mask (classifier alone, mask area
    alone, either, both; thresholds from a grid) by accuracy on the validation patients only; into the card."""
    from core.tasks.segmentation import RULES, tumour_decision

    card = ModelCard.load(tumour_card)
    tumour, segmenter = ScanModel.load(card), ScanModel.load(ModelCard.load(segmentation_card))
    wanted = set(card.data.get("validation_patients", []))
    validation = [p for p in list_patients(data_dir) if p.patient_id in wanted]
    probabilities, areas, truth, _ = slice_scores(tumour, segmenter, validation)
    thresholds = sorted({round(t, 2) for t in np.linspace(0.1, 0.9, 17)} | {float(card.threshold or 0.5)})
    grid = []
    for rule in RULES:
        for threshold in thresholds if rule != "mask" else [0.5]:
            for min_pixels in MASK_PIXEL_GRID if rule != "classifier" else [1]:
                spec = {"rule": rule, "threshold": threshold, "min_mask_pixels": min_pixels}
                decided = np.array([tumour_decision(p, a, spec) for p, a in zip(probabilities, areas, strict=True)])
                grid.append({**spec, "accuracy": float((decided == truth).mean())})
    simplicity = {"classifier": 0, "mask": 1, "either": 2, "both": 2}
    best = max(grid, key=lambda r: (round(r["accuracy"], 4), -simplicity[r["rule"]]))
    alone = max((r for r in grid if r["rule"] == "classifier"), key=lambda r: r["accuracy"])
    card.decision_rule = {
        "rule": best["rule"], "threshold": best["threshold"], "min_mask_pixels": best["min_mask_pixels"],
        "mask_model": segmenter.name, "mask_model_sha256": segmenter.card.sha256,
        "chosen_by": "accuracy on the validation patients' slices (python -m core.train mri-tumour --tune-only)",
        "validation_accuracy": best["accuracy"], "validation_accuracy_classifier_alone": alone["accuracy"],
    }  # fmt: skip
    card.save()
    log(
        f"tumour rule: {best['rule']} (validation accuracy {best['accuracy']:.4f}; "
        f"classifier alone {alone['accuracy']:.4f})"
    )
    return card
