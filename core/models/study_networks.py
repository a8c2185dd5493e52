"""The K-fold preprocessing study's model families (`core.checks.study`): a plain CNN, a CNN + GRU over image
rows, a 3-D CNN over a scale stack (the image and two smoothed copies), and the CNN fine-tuned from a backbone."""

from __future__ import annotations

import cv2
import numpy as np

FAMILIES = ("cnn", "cnn_gru", "stack3d", "finetuned")

BN_MOMENTUM = 0.9  # a run is a few hundred steps: Keras' default 0.99 leaves the moving statistics unsettled

FAMILY_LABELS = {
    "cnn": "plain CNN",
    "cnn_gru": "CNN + GRU over rows",
    "stack3d": "3D CNN over a scale stack",
    "finetuned": "fine-tuned pretrained CNN",
}


def scale_stack(batch: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 3, H, W, 1): the image, and the image smoothed with sigma 1 and 2."""
    smoothed = [np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in batch]) for sigma in (1.0, 2.0)]
    return np.stack([batch, *smoothed], axis=1)[..., np.newaxis]


def conv3d(x, filters: int, stride: int, depth_padding: str, name: str):
    """A 3x3x3 convolution over a (D, H, W, C) volume, written as one 2D convolution shared across depth
    windows (exactly a Conv3D; TensorFlow's own Conv3D is ~30x slower on CPU). `depth_padding` 'same'
    keeps D slices, 'valid' returns the single window of a depth-3 volume as an (H, W, filters) map."""
    from keras import layers

    depth, height, width, channels = x.shape[1:]
    shared = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name)

    def window(volume, start: int, label: str):
        crop = layers.Cropping3D(((start, volume.shape[1] - start - 3), (0, 0), (0, 0)), name=f"{name}_{label}_crop")
        piece = layers.Permute((2, 3, 1, 4), name=f"{name}_{label}_permute")(crop(volume))
        return layers.Reshape((height, width, 3 * channels), name=f"{name}_{label}_stack")(piece)

    if depth_padding == "valid":
        if depth != 3:
            raise ValueError("a 'valid' depth window needs a depth-3 volume")
        return shared(window(x, 0, "w0"))
    padded = layers.ZeroPadding3D(((1, 1), (0, 0), (0, 0)), name=f"{name}_pad")(x)
    slices = [shared(window(padded, d, f"w{d}")) for d in range(depth)]
    expanded = [layers.Reshape((1, *piece.shape[1:]), name=f"{name}_d{d}")(piece) for d, piece in enumerate(slices)]
    return layers.Concatenate(axis=1, name=f"{name}_volume")(expanded)


def build_family(family: str, size: int, name: str = "study"):
    """A small network of one family for (size, size) grey input, two logits."""
    import keras
    from keras import layers

    from core.models.networks import build_classifier

    if family in ("cnn", "finetuned"):
        return build_classifier(
            (size, size, 1), 2, widths=(16, 32, 64, 96), stem_stride=2, name=f"{name}_cnn", bn_momentum=BN_MOMENTUM
        )
    if family == "cnn_gru":
        inputs = keras.Input((size, size, 1), name="image")
        x = inputs
        for stage, width in enumerate((16, 32, 64)):
            stride = 2 if stage == 0 else 1
            x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"s{stage}_conv")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"s{stage}_bn")(x)
            x = layers.Activation("relu", name=f"s{stage}_relu" if stage < 2 else "last_conv")(x)
            x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
        rows, cols, channels = x.shape[1], x.shape[2], x.shape[3]
        x = layers.Reshape((rows, cols * channels), name="rows")(x)
        x = layers.GRU(64, name="gru")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
        return keras.Model(inputs, layers.Dense(2, name="logits")(x), name=f"{name}_cnn_gru")
    if family == "stack3d":
        # Two 3x3x3 convolutions read the (3, H, W) volume (the second folds its depth away); 2D stages follow.
        inputs = keras.Input((3, size, size, 1), name="volume")
        x = conv3d(inputs, 8, stride=2, depth_padding="same", name="s0_conv3d")
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="s0_bn")(x)
        x = layers.Activation("relu", name="s0_relu")(x)
        x = conv3d(x, 16, stride=1, depth_padding="valid", name="s1_conv3d")  # depth 3 -> 1, now 2D
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="s1_bn")(x)
        x = layers.Activation("relu", name="s1_relu")(x)
        x = layers.MaxPooling2D(2, name="s1_pool")(x)
        for stage, width in enumerate((48, 96), start=2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{stage}_conv")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"s{stage}_bn")(x)
            x = layers.Activation("relu", name="last_conv" if stage == 3 else f"s{stage}_relu")(x)
            if stage == 2:
                x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
        return keras.Model(inputs, layers.Dense(2, name="logits")(x), name=f"{name}_stack3d")
    raise ValueError(f"unknown model family {family!r}; choose from {FAMILIES}")
