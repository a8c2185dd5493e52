"""Out-of-distribution gate: is an upload a chest X-ray, a brain MRI slice, a CT slice, or none of them?

A small CNN at 64x64 RGB, trained on our own training images (chest_xray/train and the COVID-19
development part, LGG training patients, the 50 CT training slices) against "other": crops of the
natural and microscopy images that come with scikit-image, faces from its LFW subset, and generated
scenes (shapes, gradients, noise, text pages, stripes). Test images come from parts never trained on:
the official chest X-ray test set, the COVID-19 test part, LGG test patients, the 48 CT test slices,
and for "other" natural images held out from training (scikit-image and scikit-learn's samples),
the other half of the faces and scenes from another seed.

The model's verdict is final only after `screen`: the image content and the DICOM header (`core.screening`)
can refuse too, and say so. This module is over 400 lines because it holds one model's data, training,
evaluation and verdicts together; splitting data generation out belongs to the layout work of issue 13.

``python -m core.train gate --data ../shared/data --out weights/``
``python -m core.evaluate gate --data ../shared/data --out weights/gate.test.eval.json --update-card``
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.loading import LoadedImage, load_image
from core.screening import content_refusal, header_refusal

GATE_CLASSES = ["chest-xray", "brain-mri", "ct", "other"]
GATE_LABELS = {"chest-xray": "a chest X-ray", "brain-mri": "a brain MRI slice", "ct": "a CT slice", "other": "none"}
GATE_SIZE = 64
ACCEPT_PROBABILITY = 0.5
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MAX_CALIBRATION_REJECTION = 0.005


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The highest threshold in THRESHOLD_GRID that wrongly rejects at most 0.5% of the medical images of
    the calibration split (half the 1% goal, as a margin); the lowest one when none does.
    Returns (threshold, its false-rejection rate on the calibration split)."""
    medical = labels != GATE_CLASSES.index("other")
    rates = {}
    for threshold in THRESHOLD_GRID:
        kinds = np.array([GATE_CLASSES.index(verdict_from_probabilities(p, threshold).kind) for p in probabilities])
        rates[threshold] = float(np.mean(kinds[medical] != labels[medical]))
    passing = [t for t in THRESHOLD_GRID if rates[t] <= MAX_CALIBRATION_REJECTION]
    chosen = max(passing) if passing else THRESHOLD_GRID[0]
    return chosen, rates[chosen]


TRAIN_NATURAL = [
    "brick.png", "camera.png", "cell.png", "chelsea.png", "chessboard_GRAY.png", "clock_motion.png",
    "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
    "logo.png", "microaneurysms.png", "motorcycle_left.png", "phantom.png", "text.png",
]  # fmt: skip
TEST_NATURAL = ["astronaut.png", "coffee.png", "rocket.jpg", "moon.png", "page.png", "retina.jpg",
                "motorcycle_right.png", "chessboard_RGB.png"]  # fmt: skip


@dataclass
class GateVerdict:
    """What the gate thinks an image is, and, when it refuses, which check refused (the model, the DICOM header
    or the image content) and why."""

    kind: str
    probabilities: dict[str, float]
    refused_by: str = ""  # "", "model", "header" or "content"
    why: str = ""

    @property
    def accepted(self) -> bool:
        return self.kind != "other"

    @property
    def label(self) -> str:
        return GATE_LABELS[self.kind]

    def fits(self, expected: str) -> bool:
        return self.kind == expected

    def reason(self, expected: str) -> str:
        """A sentence for the user when the image is not what a page expects."""
        p = self.probabilities
        if self.kind == expected:
            return f"The image looks like {GATE_LABELS[expected]} (gate {p[expected]:.0%})."
        if self.kind == "other" and self.refused_by in ("header", "content"):
            source = "The DICOM header" if self.refused_by == "header" else "The image itself"
            return f"{source} rules it out: {self.why}. The models here only know chest X-rays, brain MRI and CT."
        if self.kind == "other":
            return (
                f"The image does not look like a chest X-ray, a brain MRI slice or a CT slice (the gate gives "
                f"{GATE_LABELS[expected]} {p[expected]:.0%}). The models here only know those images."
            )
        return (
            f"The image looks like {GATE_LABELS[self.kind]} ({p[self.kind]:.0%}), not {GATE_LABELS[expected]} "
            f"({p[expected]:.0%})."
        )


def screen(verdict: GateVerdict, image: LoadedImage, frame: int = 0) -> GateVerdict:
    """The gate's final word: the model's verdict, unless the image content or the DICOM header rules it out."""
    if why := content_refusal(image.frame(frame)):
        return GateVerdict("other", verdict.probabilities, "content", why)
    if why := header_refusal(image, verdict.kind if verdict.accepted else None):
        return GateVerdict("other", verdict.probabilities, "header", why)
    if not verdict.accepted:
        return GateVerdict("other", verdict.probabilities, "model", "")
    return verdict


def gate_input(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) in [0, 1] -> (64, 64, 3) float32: grey repeated, alpha dropped, area resize."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] < 3:  # grey, or grey + alpha
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., np.newaxis], 3, axis=-1)
    pixels = pixels[..., :3]
    resized = cv2.resize(pixels, (GATE_SIZE, GATE_SIZE), interpolation=cv2.INTER_AREA)
    return np.clip(resized, 0, 1).astype(np.float32)


def verdict_from_probabilities(probabilities: np.ndarray, threshold: float = ACCEPT_PROBABILITY) -> GateVerdict:
    """The most likely kind, or 'other' when that kind's probability is below `threshold`."""
    best = int(np.argmax(probabilities))
    kind = GATE_CLASSES[best]
    if probabilities[best] < threshold:
        kind = "other"
    return GateVerdict(kind, {c: float(p) for c, p in zip(GATE_CLASSES, probabilities, strict=True)})


def check_image(model, image: LoadedImage | np.ndarray, frame: int = 0) -> GateVerdict:
    """Run the gate (a `ScanModel` of task 'gate') on one image; a `LoadedImage` also goes through `screen`."""
    pixels = image.frame(frame) if isinstance(image, LoadedImage) else image
    probabilities = model.probabilities(gate_input(pixels)[np.newaxis])[0]
    verdict = verdict_from_probabilities(probabilities, model.card.threshold or ACCEPT_PROBABILITY)
    return screen(verdict, image, frame) if isinstance(image, LoadedImage) else verdict


# ----------------------------------------------------------------------------- data


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def natural_images(names: list[str]) -> list[np.ndarray]:
    """Bundled scikit-image files as float RGB/grey arrays in [0, 1]."""
    images = []
    for name in names:
        path = _skimage_dir() / name
        if path.exists():
            images.append(load_image(path.read_bytes(), name).frame(0))
    return images


def sklearn_images() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [image.astype(np.float32) / 255.0 for image in load_sample_images().images]


def faces(part: str) -> list[np.ndarray]:
    """scikit-image's LFW subset (200 faces, 25x25): first half for training, second for testing."""
    array = np.load(_skimage_dir() / "lfw_subset.npy").astype(np.float32)
    array = array / max(float(array.max()), 1e-6)
    half = len(array) // 2
    return list(array[:half] if part == "train" else array[half:])


def random_crop(image: np.ndarray, rng: np.random.Generator, min_scale: float = 0.25) -> np.ndarray:
    height, width = image.shape[:2]
    scale = rng.uniform(min_scale, 1.0)
    crop_h, crop_w = max(8, int(height * scale)), max(8, int(width * scale * rng.uniform(0.75, 1.33)))
    crop_w = min(crop_w, width)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    return image[top : top + crop_h, left : left + crop_w]


def synthetic_scene(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A generated non-medical picture: shapes, gradients, noise, a text page, stripes or a flat colour."""
    kind = rng.integers(0, 7)
    colour = rng.random() < 0.6
    channels = 3 if colour else 1
    canvas = np.zeros((size, size, channels), np.float32) + rng.random(channels).astype(np.float32)
    if kind == 0:  # shapes
        for _ in range(rng.integers(2, 12)):
            c = tuple(float(v) for v in rng.random(channels))
            x, y = (int(v) for v in rng.integers(0, size, 2))
            r = int(rng.integers(4, size // 3))
            if rng.random() < 0.5:
                cv2.circle(canvas, (x, y), r, c, -1 if rng.random() < 0.7 else 2)
            else:
                cv2.rectangle(canvas, (x, y), (x + r, y + int(rng.integers(4, size // 2))), c, -1)
    elif kind == 1:  # gradient
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        angle = rng.uniform(0, np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        canvas = (canvas * 0.5 + ramp[..., None] * rng.random(channels)).astype(np.float32)
    elif kind == 2:  # noise
        canvas = rng.random((size, size, channels)).astype(np.float32)
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.3, 4)))
    elif kind == 3:  # a text page
        page = np.full((size, size, channels), int(rng.integers(200, 256)), np.uint8)
        for row in range(6, size, int(rng.integers(8, 16))):
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, 12))
            cv2.putText(page, text, (4, row), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0,) * channels, 1)
        canvas = page.astype(np.float32) / 255.0
    elif kind == 4:  # stripes / checkerboard
        period = int(rng.integers(4, 32))
        yy, xx = np.mgrid[0:size, 0:size]
        pattern = ((xx // period + (yy // period if rng.random() < 0.5 else 0)) % 2).astype(np.float32)
        canvas = canvas * 0.3 + pattern[..., None] * 0.7
    elif kind == 5:  # dark background with a bright, textured blob (a lamp, a face, a fruit: head-like shapes)
        canvas *= 0.1
        blob = np.zeros_like(canvas)
        cv2.ellipse(blob, (size // 2 + int(rng.integers(-20, 20)), size // 2 + int(rng.integers(-20, 20))),
                    (int(rng.integers(15, 60)), int(rng.integers(15, 60))), float(rng.uniform(0, 180)), 0, 360,
                    (1.0,) * channels, -1)  # fmt: skip
        texture = cv2.GaussianBlur(rng.random((size, size, channels)).astype(np.float32), (0, 0), 2.0)
        texture = texture.reshape(size, size, channels)
        tint = rng.uniform(0.3, 1.0, channels).astype(np.float32)
        canvas = canvas + cv2.GaussianBlur(blob, (0, 0), 3).reshape(size, size, channels) * texture * tint * 1.5
    if canvas.ndim == 2:
        canvas = canvas[..., None]
    return np.clip(canvas, 0, 1).astype(np.float32).squeeze()


def jitter(image: np.ndarray, rng: np.random.Generator, crop: float = 0.8) -> np.ndarray:
    """Light augmentation of a medical image: crop-zoom, small rotation, brightness and contrast."""
    image = random_crop(image, rng, crop)
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-8, 8)), 1.0)
    image = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.08, 0.08)
    return np.clip(image * gain + offset, 0, 1).astype(np.float32)


def colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffle and rescale colour channels, shift brightness and contrast (training negatives only)."""
    if image.ndim == 3 and image.shape[-1] >= 3:
        image = image[..., rng.permutation(3)] * rng.uniform(0.6, 1.2, 3).astype(np.float32)
    gain, offset = rng.uniform(0.6, 1.4), rng.uniform(-0.2, 0.2)
    return np.clip(image * gain + offset, 0, 1).astype(np.float32)


def other_images(part: str, count: int, seed: int) -> Iterator[np.ndarray]:
    """`count` non-medical images for training ('train') or testing ('test'), from disjoint sources.
    Training images are also rotated and colour-jittered; test images are left as they are."""
    rng = np.random.default_rng(seed)
    natural = natural_images(TRAIN_NATURAL) if part == "train" else natural_images(TEST_NATURAL) + sklearn_images()
    people = faces(part)
    for index in range(count):
        choice = index % 4
        if choice in (0, 1):
            image = random_crop(natural[int(rng.integers(len(natural)))], rng)
        elif choice == 2:
            image = people[int(rng.integers(len(people)))]
        else:
            image = synthetic_scene(rng)
        if image.ndim == 3 and rng.random() < 0.4:
            image = image[..., :3].mean(axis=-1)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        if part == "train":
            image = np.ascontiguousarray(image, dtype=np.float32)
            height, width = image.shape[:2]
            turn = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-30, 30)), 1.0)
            image = colour_jitter(cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REFLECT), rng)
        yield np.ascontiguousarray(image, dtype=np.float32)


def medical_sources(data_root: Path, part: str, seed: int = 0) -> dict[str, list[Callable[[], np.ndarray]]]:
    """Loaders of medical images per gate class for 'train' or 'test' (parts never mixed)."""
    from core.ct import list_ct
    from core.data import covid_holdout, list_covid, list_labelled
    from core.mri import list_patients, split_patients

    root = Path(data_root)

    def loader(path: Path) -> Callable[[], np.ndarray]:
        return lambda: load_image(path.read_bytes(), path.name).frame(0)

    chest_dir = root / "chest_xray" / ("train" if part == "train" else "test")
    chest = [s.path for s in list_labelled(chest_dir, ["NORMAL", "PNEUMONIA"])]
    development, test = covid_holdout(list_covid(root / "covid_radiography"), 0.2, 0)
    adult = [s.path for s in (development if part == "train" else test)]
    train_patients, _, test_patients = split_patients(list_patients(root / "lgg_mri"), 0)
    mri = [s.image for p in (train_patients if part == "train" else test_patients) for s in p.slices]
    ct = [s.image for s in list_ct(root / "covid_ct_seg" / ("train" if part == "train" else "test"))]
    return {
        "chest-xray": [loader(p) for p in chest + adult],
        "brain-mri": [loader(p) for p in mri],
        "ct": [loader(p) for p in ct],
    }


def build_training_set(data_root: Path, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 64, 64, 3) images and labels, `per_class` per class; augmented; in memory only."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    sources = medical_sources(data_root, "train", seed)
    images, labels = [], []
    for label, kind in enumerate(GATE_CLASSES[:3]):
        loaders = sources[kind]
        picks = rng.choice(len(loaders), size=per_class, replace=len(loaders) < per_class)
        cache: dict[int, np.ndarray] = {}
        for pick in tqdm(picks, desc=kind, unit="img"):
            if int(pick) not in cache:
                cache[int(pick)] = loaders[int(pick)]()
            image = cache[int(pick)]
            if kind == "brain-mri" and image.ndim == 3 and rng.random() < 0.3:
                image = image[..., 1]  # FLAIR alone, as a grey upload
            images.append(gate_input(jitter(image, rng)))
            labels.append(label)
        cache.clear()
    for image in other_images("train", 2 * per_class, seed):
        images.append(gate_input(image))
        labels.append(GATE_CLASSES.index("other"))
    return np.stack(images), np.array(labels)


def train_gate(
    data_root: Path,
    out_dir: Path,
    per_class: int = 1500,
    epochs: int = 8,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    **_: Any,
):
    """Train the gate, fit its temperature on a held-back tenth of the (training-source) images, save it."""
    import keras
    import tensorflow as tf

    from core.cards import InputSpec, ModelCard, sha256_of
    from core.fitting import compile_cosine, export_model
    from core.metrics import fit_temperature, multiclass_metrics
    from core.models import build_classifier, softmax

    keras.utils.set_random_seed(seed)
    started = time.time()
    x, y = build_training_set(Path(data_root), per_class, seed)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = len(x) // 10
    x_val, y_val, x_train, y_train = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    log(f"gate: {len(x_train)} training and {n_val} calibration images, {per_class} per class")
    model = build_classifier((GATE_SIZE, GATE_SIZE, 3), len(GATE_CLASSES), widths=(16, 32, 64, 96), name="gate_cnn")
    steps = int(np.ceil(len(x_train) / batch_size))
    compile_cosine(model, learning_rate, steps, epochs, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=seed).batch(batch_size)
    model.fit(dataset, epochs=epochs, verbose=2)
    forward = tf.function(lambda batch: model(batch, training=False))
    logits = np.concatenate([forward(x_val[i : i + 256]).numpy() for i in range(0, len(x_val), 256)])
    temperature, before, after = fit_temperature(logits, y_val)
    threshold, calibration_rejection = choose_threshold(softmax(logits, temperature), y_val)
    log(f"acceptance threshold {threshold} (calibration false rejection {calibration_rejection:.4f})")

    card = ModelCard(
        name="gate",
        task="gate",
        title="Out-of-distribution gate: chest X-ray / brain MRI / CT / other",
        modality="any",
        weights="gate.keras",
        classes=list(GATE_CLASSES),
        input=InputSpec(height=GATE_SIZE, width=GATE_SIZE, channels=3),
        preprocessing=[{"name": "resize", "size": [GATE_SIZE, GATE_SIZE]}],
        threshold=threshold,
        threshold_method="an image is accepted as a kind when that kind is the most likely and its probability "
        f"is at least the threshold, otherwise it is 'other'; the threshold is the highest of {list(THRESHOLD_GRID)} "
        f"that wrongly rejects at most {MAX_CALIBRATION_REJECTION:.1%} of the medical images of the calibration "
        f"split, or {THRESHOLD_GRID[0]} when none does (here {threshold}, calibration false rejection "
        f"{calibration_rejection:.2%})",
        temperature=round(temperature, 4),
        calibration_method=f"temperature scaling on a held-back tenth of the training images (NLL {before:.4f} -> "
        f"{after:.4f})",
        description="Runs before every prediction: the app withholds a model's answer when the image is not the "
        "kind that model knows.",
        deployed=False,
        variant="gate",
        limits=[
            "Trained on this project's data sets only: a chest X-ray from a very different device, a brain MRI in "
            "another orientation or an MRI of another body part may be judged wrongly.",
            "Non-medical training images are few in kind (scikit-image samples, faces, generated scenes).",
        ],
    )
    weights_path = Path(out_dir) / card.weights
    export_model(model, weights_path)
    card.sha256 = sha256_of(weights_path)
    card.architecture = f"compact CNN, 64x64 RGB input, {model.count_params():,} parameters"
    card.data = {
        "source": "chest: chest_xray/train + covid_radiography development part; brain MRI: LGG training "
        "patients (seed 0); CT: covid_ct_seg/train; other: scikit-image samples "
        f"({', '.join(TRAIN_NATURAL)}), the first 100 LFW faces, generated scenes",
        "per_class": per_class,
        "n_other": 2 * per_class,
        "augmentation": "crop-zoom, rotation +-8 deg, brightness and contrast; MRI: 30% FLAIR alone as grey; "
        "other: rotation +-30 deg, channel shuffle and scaling, brightness and contrast; balanced class weights",
        "test": "chest_xray/test, covid test part, LGG test patients, covid_ct_seg/test; other: held-out "
        f"images ({', '.join(TEST_NATURAL)}, scikit-learn samples), the other 100 faces, scenes from another seed",
    }
    probabilities = softmax(logits, temperature)
    card.training = {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                     "seconds": round(time.time() - started, 1)}  # fmt: skip
    card.metrics = {"validation": multiclass_metrics(y_val, probabilities, GATE_CLASSES)}
    card.save(Path(out_dir) / "gate.json")
    log(f"saved {weights_path}; held-back accuracy {card.metrics['validation']['accuracy']:.4f}")
    return card


def evaluate_gate(model, data_root: Path, n_other: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """False-rejection rate per medical test set and rejection rate of non-medical test images."""
    from tqdm import tqdm

    sources = medical_sources(Path(data_root), "test", seed)
    out: dict[str, Any] = {"per_kind": {}}
    rejected_total = n_total = 0
    for kind, loaders in sources.items():
        verdicts = {}
        for start in tqdm(range(0, len(loaders), 64), desc=kind, disable=not progress):
            pixels = [load() for load in loaders[start : start + 64]]
            batch = np.stack([gate_input(image) for image in pixels])
            for image, probs in zip(pixels, model.probabilities(batch), strict=True):
                verdict = verdict_from_probabilities(probs, model.card.threshold or ACCEPT_PROBABILITY)
                found = "other" if content_refusal(image) else verdict.kind  # the content check runs too
                verdicts[found] = verdicts.get(found, 0) + 1
        wrong = len(loaders) - verdicts.get(kind, 0)
        out["per_kind"][kind] = {
            "n": len(loaders),
            "verdicts": verdicts,
            "false_rejection_rate": wrong / max(len(loaders), 1),
        }
        rejected_total += wrong
        n_total += len(loaders)
    out["false_rejection_rate_all_medical"] = rejected_total / max(n_total, 1)
    other_pixels = list(other_images("test", n_other, seed + 99))
    others = np.stack([gate_input(image) for image in other_pixels])
    threshold = model.card.threshold or ACCEPT_PROBABILITY
    kinds = [
        "other" if content_refusal(image) else verdict_from_probabilities(p, threshold).kind
        for image, p in zip(other_pixels, model.probabilities(others), strict=True)
    ]
    out["other"] = {
        "n": n_other,
        "verdicts": {kind: kinds.count(kind) for kind in GATE_CLASSES if kinds.count(kind)},
        "rejection_rate": kinds.count("other") / n_other,
    }
    out["pydicom_test_files"] = pydicom_table(model)
    return out


def pydicom_table(model) -> dict[str, Any]:
    """The gate (model, header and content checks) on every DICOM file of the installed pydicom test data:
    how many decode, what each is taken for, and which check refused it."""
    from core.errors import ScanSightError
    from core.samples import _package_dicom_dirs

    files = sorted({path for folder in _package_dicom_dirs() for path in folder.rglob("*.dcm")})
    rows, unreadable = [], 0
    for path in files:
        try:
            image = load_image(path.read_bytes(), path.name, all_frames=False)
        except ScanSightError:
            unreadable += 1
            continue
        verdict = check_image(model, image)
        rows.append({
            "file": path.name, "modality": image.modality or "", "body_part": image.body_part or "",
            "gate": verdict.kind, "refused_by": verdict.refused_by, "why": verdict.why,
        })  # fmt: skip
    counts: dict[str, int] = {}
    for row in rows:
        key = row["gate"] if row["gate"] != "other" else f"refused by the {row['refused_by']}"
        counts[key] = counts.get(key, 0) + 1
    return {"n_files": len(files), "n_decoded": len(rows), "n_unreadable": unreadable, "verdicts": counts,
            "accepted": [row for row in rows if row["gate"] != "other"], "rows": rows}  # fmt: skip
