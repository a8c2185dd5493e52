"""The gate's data: our own medical training / test images per kind, and "other" images: crops of the natural and
microscopy images that come with scikit-image, faces from its LFW subset, and generated scenes (shapes,
gradients, noise, text pages, stripes). Test images come from parts never trained on (see `core.tasks.gate`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from core.io.loading import load_image
from core.tasks.gate import GATE_CLASSES, gate_input

TRAIN_NATURAL = [
    "brick.png", "camera.png", "cell.png", "chelsea.png", "chessboard_GRAY.png", "clock_motion.png",
    "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
    "logo.png", "microaneurysms.png", "motorcycle_left.png", "phantom.png", "text.png",
]  # fmt: skip

TEST_NATURAL = ["astronaut.png", "coffee.png", "rocket.jpg", "moon.png", "page.png", "retina.jpg",
                "motorcycle_right.png", "chessboard_RGB.png"]  # fmt: skip


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


OTHER_SOURCES = ("natural", "natural", "face", "scene")  # image `index` of `other_images` is OTHER_SOURCES[index % 4]


def other_images(part: str, count: int, seed: int) -> Iterator[np.ndarray]:
    """`count` non-medical images for training ('train') or testing ('test'), from disjoint sources.
    Training images are also rotated and colour-jittered; test images are left as they are."""
    rng = np.random.default_rng(seed)
    natural = natural_images(TRAIN_NATURAL) if part == "train" else natural_images(TEST_NATURAL) + sklearn_images()
    people = faces(part)
    for index in range(count):
        source = OTHER_SOURCES[index % len(OTHER_SOURCES)]
        if source == "natural":
            image = random_crop(natural[int(rng.integers(len(natural)))], rng)
        elif source == "face":
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
    from core.data.chest import covid_split, list_labelled
    from core.data.ct import list_ct
    from core.data.mri import list_patients, split_patients

    root = Path(data_root)

    def loader(path: Path) -> Callable[[], np.ndarray]:
        return lambda: load_image(path.read_bytes(), path.name).frame(0)

    chest_dir = root / "chest_xray" / ("train" if part == "train" else "test")
    chest = [s.path for s in list_labelled(chest_dir, ["NORMAL", "PNEUMONIA"])]
    development, test = covid_split(root / "covid_radiography")
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
