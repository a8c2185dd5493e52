"""Make the demo sample set: ``python -m core.cli.make_samples --data ../shared/data --out assets/samples``.

Only test-split images, only from sources whose licence allows redistribution, renamed so that no patient id
or date travels with them (a manifest keeps the source for attribution):
- Kermany et al. 2018 paediatric chest X-rays (CC BY 4.0), official test set: the first normal, bacterial and
  viral image by file name;
- TCGA-LGG brain MRI (Buda et al. 2019, TCIA, CC BY 3.0), the `mri-segmentation` card's held-out test
  patients: for the first two, the slice with the largest marked tumour, and for the first one also a slice
  without tumour; and the first one's whole study as a zip (slices and the radiologist's masks, renamed
  ``slice_NN.jpg`` / ``slice_NN_mask.png``) for the Brain MRI page's study mode.
No CT slice ships: the COVID-19 CT set's licence does not clearly allow redistribution.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

MANIFEST = "samples.json"
KERMANY = "Kermany et al. 2018, Labeled Optical Coherence Tomography and Chest X-Ray Images (CC BY 4.0), test set"
LGG_LABEL = "Brain MRI slice (pre-contrast, FLAIR, post-contrast), test patient"
TCGA = "TCGA-LGG via Buda et al. 2019 / TCIA (CC BY 3.0), a held-out test patient of this project"


def _mask_area(path: Path) -> int:
    from PIL import Image

    return int((np.asarray(Image.open(path)) > 0).sum())


def pick(data: Path) -> list[dict[str, str]]:
    """(source path, new name, label, source) for every sample, chosen by fixed rules."""
    chosen = []
    test = data / "chest_xray" / "test"
    for folder, needle, name, label in (
        ("NORMAL", "", "chest-xray-child-normal.jpeg", "Chest X-ray, child, normal"),
        (
            "PNEUMONIA",
            "bacteria",
            "chest-xray-child-bacterial-pneumonia.jpeg",
            "Chest X-ray, child, bacterial pneumonia",
        ),
        ("PNEUMONIA", "virus", "chest-xray-child-viral-pneumonia.jpeg", "Chest X-ray, child, viral pneumonia"),
    ):
        source = sorted(p for p in (test / folder).glob("*.jpeg") if needle in p.name)[0]
        chosen.append({"source_path": str(source), "file": name, "label": label, "source": KERMANY})
    card = json.loads(Path(__file__).resolve().parents[2].joinpath("weights", "mri-segmentation.json").read_text())
    for number, patient in enumerate(card["data"]["test_patients"][:2], start=1):
        folder = data / "lgg_mri" / patient
        masks = sorted(folder.glob("*_mask.png"), key=lambda p: int(p.stem.split("_")[-2]))
        areas = [(_mask_area(mask), mask) for mask in masks]
        _, best = max(areas, key=lambda item: item[0])
        image = best.with_name(best.name.replace("_mask.png", ".jpg"))
        chosen.append({
            "source_path": str(image), "file": f"brain-mri-lgg-patient-{number}-tumour.jpg",
            "label": f"{LGG_LABEL} {number}, tumour", "source": TCGA,
        })  # fmt: skip
        if number == 1:
            empty = next(mask for area, mask in areas if area == 0)
            chosen.append({
                "source_path": str(empty.with_name(empty.name.replace("_mask.png", ".jpg"))),
                "file": "brain-mri-lgg-patient-1-no-tumour.jpg",
                "label": f"{LGG_LABEL} 1, no tumour", "source": TCGA,
            })  # fmt: skip
    return chosen


def write_study_zip(data: Path, out: Path) -> dict[str, str]:
    """The first test patient's slices and masks, in slice order, renamed (no id, no date), as one zip."""
    import zipfile

    from core.data.mri import list_patients

    card = json.loads(Path(__file__).resolve().parents[2].joinpath("weights", "mri-segmentation.json").read_text())
    wanted = card["data"]["test_patients"][0]
    patient = next(p for p in list_patients(data / "lgg_mri") if p.patient_id == wanted)
    name = "brain-mri-lgg-study-patient-1.zip"
    with zipfile.ZipFile(out / name, "w", compression=zipfile.ZIP_STORED) as archive:
        for number, item in enumerate(patient.slices, start=1):
            archive.write(item.image, f"slice_{number:02d}{item.image.suffix}")
            if item.mask is not None:
                archive.write(item.mask, f"slice_{number:02d}_mask{item.mask.suffix}")
    return {
        "file": name, "kind": "study",
        "label": f"Brain MRI study, test patient 1: {len(patient.slices)} slices with the radiologist's masks",
        "source": TCGA,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.cli.make_samples", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for item in pick(args.data):
        shutil.copyfile(item.pop("source_path"), args.out / item["file"])
        manifest.append(item)
    manifest.append(write_study_zip(args.data, args.out))
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum((args.out / item["file"]).stat().st_size for item in manifest)
    print(f"{len(manifest)} samples, {total / 1e3:.0f} kB, in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
