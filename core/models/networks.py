"""Network builders: the compact chest CNN, the ResUNet, a classifier on a segmenter's encoder, and a U-Net on the
EfficientNet-Lite0 encoder. Flat functional Keras models (tf-keras-vis needs that); classifiers end in
``logits``, segmenters in one sigmoid channel named ``mask``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.models.efficientnet import CHEST_BLOCKS, IMAGENET_WEIGHTS, assign_weights, build_lite0, load_weights_npz

LAST_CONV = "last_conv"
ENSEMBLE_FEATURES = "ensemble_features"  # a merged classifier ensemble's CAM layer (`merged_classifier`)


def build_classifier(
    input_shape: tuple[int, int, int],
    n_classes: int,
    widths: tuple[int, ...] = (16, 32, 64, 128, 192),
    dropout: float = 0.3,
    stem_stride: int = 2,
    name: str = "scansight_cnn",
    bn_momentum: float = 0.99,
):
    """A compact VGG-style CNN: a strided stem, then conv-BN-ReLU x2 per stage with max-pooling; logits.
    `bn_momentum` 0.9 suits short trainings (a few hundred steps), where 0.99 leaves the moving statistics
    far from the data's."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for stage, width in enumerate(widths):
        last_stage = stage == len(widths) - 1
        stride = stem_stride if stage == 0 else 1
        x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"s{stage}_conv1")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"s{stage}_bn1")(x)
        x = layers.Activation("relu", name=f"s{stage}_relu1")(x)
        conv_name = LAST_CONV if last_stage else f"s{stage}_conv2"
        if stage == 0:
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=conv_name)(x)
        else:
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, name=conv_name)(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"s{stage}_bn2")(x)
        x = layers.Activation("relu", name=f"s{stage}_relu2")(x)
        if stage < len(widths) - 2:  # the last two stages share the final (input / 16) grid
            x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _residual_block(x, filters: int, stride: int, name: str):
    """Pre-activation residual block: BN-ReLU-conv3x3 (stride) - BN-ReLU-conv3x3, plus a 1x1 shortcut."""
    from keras import layers

    shortcut = x
    y = layers.BatchNormalization(name=f"{name}_bn1")(x)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_skip")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_skip_bn")(shortcut)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_resunet(
    input_shape: tuple[int, int, int], widths: tuple[int, ...] = (16, 32, 64, 128, 256), name: str = "resunet"
):
    """ResUNet (Zhang et al. 2018 style): residual encoder blocks with stride-2 downsampling, a bridge,
    and a decoder of upsampling + skip concatenation + residual blocks; one sigmoid mask channel."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _residual_block(x, widths[0], 1, "enc0")
    skips = [x]
    for level, width in enumerate(widths[1:-1], start=1):
        x = _residual_block(x, width, 2, f"enc{level}")
        skips.append(x)
    x = _residual_block(x, widths[-1], 2, "bridge")
    x = layers.BatchNormalization(name="bridge_bn")(x)
    x = layers.Activation("relu", name=LAST_CONV)(x)
    for level, skip in reversed(list(enumerate(skips))):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = _residual_block(x, widths[level], 1, f"dec{level}")
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Activation("relu", name="head_relu")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def encoder_end(segmenter) -> str:
    """The name of a segmenter's last encoder layer: the one that feeds its first decoder upsampling
    (`last_conv` in the ResUNet, the last Lite0 block in the Lite0 U-Net)."""
    first_up = next(layer for layer in segmenter.layers if layer.name.startswith("dec") and layer.name.endswith("_up"))
    return first_up.input._keras_history.operation.name


def classifier_from_encoder(segmenter, n_classes: int = 2, dropout: float = 0.3, name: str = "encoder_classifier"):
    """A flat classifier reusing a segmentation network's encoder layers (up to `encoder_end`), with a new head;
    Grad-CAM reads that last encoder layer."""
    import keras
    from keras import layers

    features = segmenter.get_layer(encoder_end(segmenter)).output
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(segmenter.input, outputs, name=name)


# Skip connections of the U-Net: (layer, stride) at strides 2, 4, 8, 16; the last encoder block gives stride 32.
UNET_SKIPS = (("block0_project_bn", 2), ("block2_add", 4), ("block4_add", 8), ("block10_add", 16))


def lite0_unet(
    size: int,
    imagenet: bool = True,
    blocks: int = CHEST_BLOCKS,
    decoder: Sequence[int] = (96, 48, 32, 24, 16),
    name: str = "lite0_unet",
    weights_path: Path = IMAGENET_WEIGHTS,
):
    """A U-Net on the Lite0 encoder (its first `blocks` blocks, ImageNet weights when `imagenet`): at each
    upsampling (five from stride 32, four from 16; `decoder` widths from its end), bilinear x2, the encoder's
    skip of that stride, two 3x3 conv + BN + ReLU; one sigmoid mask channel named ``mask``, as `build_resunet`.
    Input (size, size, 3) in [0, 1]."""
    import keras
    from keras import layers

    encoder = build_lite0((size, size, 3), None, blocks=blocks, head=False, name=f"{name}_encoder")
    if imagenet:
        assign_weights(encoder, load_weights_npz(weights_path))
    stride = size // encoder.output.shape[1]
    skips = [encoder.get_layer(layer).output for layer, at in reversed(UNET_SKIPS) if at < stride] + [None]
    x = encoder.output
    for level, (width, skip) in enumerate(zip(decoder[-len(skips) :], skips, strict=True)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        if skip is not None:
            x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        for part in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"dec{level}_conv{part}")(x)
            x = layers.BatchNormalization(name=f"dec{level}_bn{part}")(x)
            x = layers.ReLU(name=f"dec{level}_relu{part}")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask", dtype="float32")(x)
    return keras.Model(encoder.input, outputs, name=name)


def build_segmenter(
    architecture: str, size: int, widths: Sequence[int], encoder_blocks: int, prefix: str
) -> tuple[object, str]:
    """(network, its description for the card): the ResUNet (`widths`), or with `architecture` "lite0-unet" the
    U-Net on the first `encoder_blocks` ImageNet Lite0 blocks; named `{prefix}_resunet` / `{prefix}_lite0_unet`."""
    if architecture == "lite0-unet":
        model = lite0_unet(size, imagenet=True, blocks=encoder_blocks, name=f"{prefix}_lite0_unet")
        return model, (
            f"U-Net on EfficientNet-Lite0 blocks 0-{encoder_blocks - 1} from ImageNet (decoder: bilinear x2, skip, "
            f"two 3x3 conv + BN + ReLU per level), sigmoid mask; {model.count_params():,} parameters"
        )
    model = build_resunet((size, size, 3), tuple(widths), name=f"{prefix}_resunet")
    return model, (
        f"ResUNet: residual encoder {list(widths)} with stride-2 downsampling, bridge, decoder with bilinear "
        f"upsampling + skip concatenation + residual blocks, sigmoid mask; {model.count_params():,} parameters"
    )


def average_of(networks: Sequence[Any], name: str = "ensemble"):
    """One network whose output is the mean of `networks`' outputs (same input, same output shape): an ensemble
    that every caller of a `ScanModel` uses as one network. Each member keeps its own layers, as a nested model."""
    import keras

    inputs = keras.Input(networks[0].input_shape[1:], name="image")
    outputs = [keras.Model(net.input, net.output, name=f"member{i}")(inputs) for i, net in enumerate(networks)]
    return keras.Model(inputs, keras.layers.Average(name="mean")(outputs), name=name)


def is_pooled_classifier(network: Any) -> bool:
    """Whether `network` ends in global average pooling (``gap``) and a dense ``logits`` layer, as every chest
    classifier here does (the compact CNN, Lite0, a segmenter's encoder): what `merged_classifier` needs."""
    names = {layer.name for layer in network.layers}
    if not {"gap", "logits"} <= names or type(network.get_layer("logits")).__name__ != "Dense":
        return False
    between = network.get_layer("logits").input._keras_history.operation  # gap, or a dropout after it
    if type(between).__name__ == "Dropout":
        between = between.input._keras_history.operation
    return between.name == "gap" and type(between).__name__ == "GlobalAveragePooling2D"


def merged_classifier(networks: Sequence[Any], name: str = "ensemble"):
    """One flat network whose logits are the mean of `networks`' logits (classifiers with the same input and
    classes, each ending in ``gap`` -> dropout -> dense ``logits``): each member's layers up to its pooling, copied
    with their weights under the prefix ``m{i}_``; their last feature maps concatenated (``ensemble_features``, the
    CAM layer: Grad-CAM of the mean's score weighs every member's channels together, so a member with stronger
    activations weighs more; it is not the mean of the members' own heatmaps); one pooling; and a dense layer
    holding every member's weights divided by their number. Pooling and the dense layer are linear and dropout
    is off at inference, so the logits equal the mean of the members' exactly (up to float rounding). Flat, unlike
    `average_of`, so Grad-CAM and tf-keras-vis read it like any other classifier."""
    import keras
    import numpy as np
    from keras import layers

    if len(networks) < 2 or not all(is_pooled_classifier(network) for network in networks):
        raise ValueError("merged_classifier needs two or more classifiers ending in 'gap' and a dense 'logits'")
    if len({tuple(network.input_shape[1:]) for network in networks}) != 1:
        raise ValueError("merged_classifier needs networks that read the same input shape")
    inputs = keras.Input(networks[0].input_shape[1:], name="image")
    features, kernels, biases = [], [], []
    for index, network in enumerate(networks):
        prefix = f"m{index}_"
        trunk = keras.Model(network.input, network.get_layer("gap").input)
        copy = keras.models.clone_model(trunk, input_tensors=inputs, clone_function=_renamed(prefix))
        for layer in trunk.layers:
            if layer.weights:
                copy.get_layer(prefix + layer.name).set_weights(layer.get_weights())
        features.append(copy.output)
        kernel, bias = network.get_layer("logits").get_weights()
        kernels.append(kernel)
        biases.append(bias)
    if len({kernel.shape[1] for kernel in kernels}) != 1:
        raise ValueError("merged_classifier needs networks with the same classes")
    x = layers.Concatenate(name=ENSEMBLE_FEATURES)(features)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    dense = layers.Dense(kernels[0].shape[1], name="logits")
    outputs = dense(x)
    dense.set_weights([np.concatenate(kernels) / len(kernels), np.mean(biases, axis=0)])
    return keras.Model(inputs, outputs, name=name)


def _renamed(prefix: str):
    """A `clone_model` clone function: the same layer, fresh weights, its name behind `prefix`."""

    def clone(layer):
        config = layer.get_config()
        config["name"] = prefix + layer.name
        return layer.__class__.from_config(config)

    return clone
