"""Batch CLI: readable files become predictions, unreadable ones rows with their error; nothing stops."""

from __future__ import annotations

import csv

import pytest

from core.cli import predict
from tests.helpers import encode, png_bytes, synthetic_chest


def test_batch_cli_writes_a_row_per_file_and_survives_bad_ones(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "studies"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(synthetic_chest(64)))
    (folder / "nested" / "b.jpg").write_bytes(encode(synthetic_chest(80), "JPEG"))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-truncated")
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out.csv"
    code = predict.main([str(folder), "--task", "pneumonia", "--weights", str(tiny_weights), "--csv", str(out)])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    by_name = {row["file"].rsplit("/", 1)[-1]: row for row in rows}
    assert by_name["a.png"]["label"] in {"NORMAL", "PNEUMONIA"} and 0 <= float(by_name["a.png"]["p_PNEUMONIA"]) <= 1
    assert float(by_name["a.png"]["p_PNEUMONIA"]) + float(by_name["a.png"]["p_NORMAL"]) == pytest.approx(1, abs=1e-3)
    assert by_name["b.jpg"]["label"] and not by_name["b.jpg"]["error"]
    assert "damaged or truncated" in by_name["broken.png"]["error"]
    assert "empty" in by_name["empty.jpg"]["error"]
    err = capsys.readouterr().err
    assert "broken.png" in err and "4 files: 2 answered, 0 without an answer" in err and "2 could not be read" in err
    assert "Traceback" not in err


def test_batch_flags_images_the_gate_says_are_another_kind(tmp_path, tiny_weights, capsys):
    import shutil

    import skimage

    from core.models.cards import WEIGHTS_DIR, list_cards

    if "gate" not in list_cards():
        pytest.skip("no committed gate model in weights/")
    for suffix in (".keras", ".json"):
        shutil.copy(WEIGHTS_DIR / f"gate{suffix}", tiny_weights / f"gate{suffix}")
    photo = tmp_path / "coffee.png"
    shutil.copy(f"{skimage.__path__[0]}/data/coffee.png", photo)
    out = tmp_path / "out.csv"
    assert predict.main([str(photo), "--weights", str(tiny_weights), "--csv", str(out)]) == 0
    row = next(csv.DictReader(out.open()))  # --task auto: no model for a photo
    assert row["flags"].startswith("gate: looks like none of the kinds") and row["label"] == ""
    assert row["gate"].startswith("refused") and not row["model"]
    assert predict.main([str(photo), "--task", "pneumonia", "--weights", str(tiny_weights), "--csv", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    assert "not what pneumonia knows" in row["flags"] and row["label"] == "" and not row.get("p_PNEUMONIA")
    assert predict.main([str(photo), "--task", "pneumonia", "--weights", str(tiny_weights), "--csv", str(out),
                         "--no-gate"]) == 0  # fmt: skip
    row = next(csv.DictReader(out.open()))
    assert "gate" not in row["flags"] and row["label"] and row["gate"] == ""


def test_auto_picks_the_model_that_fits_each_image(tmp_path, capsys):
    from core.models.cards import list_cards
    from tests.helpers import data_path

    if not {"gate", "pneumonia", "mri-tumour"} <= set(list_cards()):
        pytest.skip("the committed gate, pneumonia and mri-tumour models are needed")
    chest = sorted(data_path("chest_xray", "test", "NORMAL").glob("*.jpeg"))[0]
    mri = next(p for p in sorted(data_path("lgg_mri").rglob("*.jpg")) if "mask" not in p.name)
    out = tmp_path / "out.csv"
    assert predict.main([str(chest), str(mri), "--csv", str(out), "--keep-names"]) == 0
    rows = {row["file"]: row for row in csv.DictReader(out.open())}
    assert rows[str(chest)]["model"] == "pneumonia" and rows[str(chest)]["p_PNEUMONIA"]
    assert rows[str(mri)]["model"] == "mri-tumour" and rows[str(mri)]["label"] in {"TUMOUR", "NO_TUMOUR"}


def test_identifier_like_names_leave_the_csv_unless_kept(tmp_path, tiny_weights, capsys):
    image = tmp_path / "0a8d486f-1aa6-4fcf-b7be-4bf04fc8628b.png"
    image.write_bytes(png_bytes(synthetic_chest(64)))
    out = tmp_path / "out.csv"
    args = [str(image), "--task", "pneumonia", "--weights", str(tiny_weights), "--csv", str(out)]
    assert predict.main(args) == 0
    assert next(csv.DictReader(out.open()))["file"] == "file 1"
    assert predict.main([*args, "--keep-names"]) == 0
    assert next(csv.DictReader(out.open()))["file"] == str(image)


def test_batch_answers_brain_mri_by_the_same_rule_as_the_mri_page():
    """mri-tumour's card combines classifier and mask: the batch label is that rule's answer, not the classifier's."""
    from core.io.loading import load_image
    from core.io.samples import demo_set
    from core.models.cards import list_cards
    from core.models.scan_model import ScanModel
    from core.tasks.segmentation import segment, tumour_decision

    cards = list_cards()
    if "mri-tumour" not in cards or not cards["mri-tumour"].decision_rule:
        pytest.skip("the committed mri-tumour card has no decision rule")
    tumour, segmenter = ScanModel.load("mri-tumour"), ScanModel.load("mri-segmentation")
    slices = [s for s in demo_set() if s.path.name.startswith("brain-mri")]
    assert slices
    rows = predict.predict_uploads([(s.path.name, s.read) for s in slices], tumour)
    for sample, row in zip(slices, rows, strict=True):
        image = load_image(sample.read(), sample.path.name)
        p = tumour.predict(image).positive_probability
        expected = tumour_decision(p, segment(segmenter, image).area_pixels, tumour.card.decision_rule)
        assert row.label == ("TUMOUR" if expected else "NO_TUMOUR"), sample.path.name


def test_the_tumour_rule_reuses_the_resident_mask_model(monkeypatch):
    """In a model process the mask model is already loaded: the rule must not load a second copy."""
    import numpy as np

    from core.models.cards import list_cards
    from core.models.scan_model import ScanModel
    from core.tasks import inference
    from core.tasks.segmentation import rule_decisions, tumour_decision

    if "mri-tumour" not in list_cards() or not list_cards()["mri-tumour"].decision_rule:
        pytest.skip("the committed mri-tumour card has no decision rule")
    tumour = inference.resident_model("mri-tumour")
    segmenter = inference.resident_model("mri-segmentation")
    empty = np.zeros((64, 64, 3), np.float32)
    area = int((segmenter.segment_many([empty])[0] >= segmenter.card.mask_threshold).sum())
    expected = tumour_decision(0.9, area, tumour.card.decision_rule)  # by the card's rule, whichever it is
    loads = []
    monkeypatch.setattr(ScanModel, "load", classmethod(lambda cls, *a, **k: loads.append(a)))
    decided = rule_decisions(tumour, np.array([[0.1, 0.9]]), [empty])
    assert loads == [] and decided.tolist() == [tumour.card.positive_index if expected else 0]
