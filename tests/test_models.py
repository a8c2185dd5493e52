"""Model registry, cards, prediction and Grad-CAM on a tiny generated model; the committed cards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ModelCardError
from core.explain.gradcam import (
    CAM_METHODS,
    CamLayerError,
    UnknownCamMethodError,
    class_activation_maps,
    heatmap,
    score_weights,
)
from core.explain.overlay import overlay
from core.io.loading import load_image
from core.models.cards import WEIGHTS_DIR, ModelCard, list_cards, sha256_of
from core.models.scan_model import ScanModel
from tests.helpers import make_model, png_bytes, synthetic_chest


def test_card_round_trips_through_json(tmp_path):
    card = make_model(tmp_path)
    again = ModelCard.load(tmp_path / "tiny.json")
    assert again.to_dict() == card.to_dict()
    assert list(list_cards(tmp_path)) == ["tiny"]


def test_prediction_is_a_calibrated_probability_per_class(tiny_model):
    image = load_image(png_bytes(synthetic_chest()), "chest.png")
    prediction = tiny_model.predict(image)
    assert set(prediction.probabilities) == {"NORMAL", "PNEUMONIA"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    expected = "PNEUMONIA" if prediction.positive_probability >= 0.5 else "NORMAL"
    assert prediction.label == expected and prediction.threshold == 0.5


def test_threshold_decides_the_label(tiny_model):
    probabilities = np.array([[0.7, 0.3], [0.2, 0.8]])
    tiny_model.card.threshold = 0.25
    try:
        assert tiny_model.decide(probabilities).tolist() == [1, 1]
    finally:
        tiny_model.card.threshold = 0.5
    assert tiny_model.decide(probabilities).tolist() == [0, 1]


def test_tampered_weights_are_refused(tmp_path):
    card = make_model(tmp_path)
    raw = json.loads((tmp_path / "tiny.json").read_text())
    raw["sha256"] = "0" * 64
    (tmp_path / "tiny.json").write_text(json.dumps(raw))
    with pytest.raises(ModelCardError, match="sha256"):
        ScanModel.load("tiny", tmp_path)
    assert card.weights_path.exists()


def test_missing_model_is_a_typed_error(tmp_path):
    with pytest.raises(ModelCardError):
        ScanModel.load("nothing-here", tmp_path)


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_heatmap_is_normalised_and_has_the_image_size(tiny_model, method):
    pixels = synthetic_chest(100).astype(np.float32)[:, :90] / 255
    cam = heatmap(tiny_model, pixels, method=method)
    assert cam.shape == (100, 90) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and np.isfinite(cam).all()


def test_heatmap_is_placed_inside_the_lung_crop(tmp_path):
    card = make_model(
        tmp_path, [{"name": "grey"}, {"name": "lung_crop"}, {"name": "resize", "size": [32, 32]}], name="cropped"
    )
    model = ScanModel.load(card.name, tmp_path)
    pixels = synthetic_chest(200).astype(np.float32) / 255
    cam = heatmap(model, pixels)
    assert cam.shape == (200, 200)
    assert cam[:5].max() == 0.0  # the top rows are outside the lung box


@pytest.mark.parametrize("method", list(CAM_METHODS))
@pytest.mark.parametrize("name", ["pneumonia", "pneumonia-type", "pneumonia-finetuned", "mri-tumour"])
def test_compiled_maps_are_tf_keras_vis_maps_on_the_layer_the_card_names(name, method):
    """Our compiled Grad-CAM / Grad-CAM++ give tf-keras-vis's maps, on exactly the card's layer, for a batch of
    two images and every class."""
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    model = ScanModel.load(name)
    channels, side = model.card.input.channels, model.card.input.height
    images = [synthetic_chest(side).astype(np.float32) / 255, synthetic_chest(side).T.astype(np.float32) / 255]
    prepared = np.stack([model.prepare(np.repeat(p[..., None], 3, -1) if channels == 3 else p) for p in images])
    reference = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus}[method](model.keras_model, clone=False)
    for target in model.classes:
        weights = tf.constant(score_weights(model, target))
        ours = class_activation_maps(model, prepared, target, method)
        expected = reference(
            lambda logits, w=weights: tf.linalg.matvec(logits, w),
            prepared,
            penultimate_layer=model.card.cam_layer,
            seek_penultimate_conv_layer=False,
        )
        assert ours.shape == prepared.shape[:3] and ours.max() == pytest.approx(1.0, abs=1e-3)
        np.testing.assert_allclose(ours, expected, atol=1e-5 if method == "gradcam" else 2e-3)  # ++: exp(score)
    # pinned tf-keras-vis 0.8.7, by default, moves from a layer that is not a Conv (an Add, a SeparableConv2D) to
    # the nearest Conv2D before it, as it did for every committed model: another map
    moved = reference(lambda out: tf.linalg.matvec(out, weights), prepared, penultimate_layer=model.card.cam_layer)
    assert np.abs(ours - moved).max() > 0.05


def test_score_weights_are_the_target_logit_minus_the_mean_of_the_others(tiny_model):
    from core.errors import ScanSightError

    assert score_weights(tiny_model, "PNEUMONIA").tolist() == [-1.0, 1.0]
    tiny_model.card.classes = ["NORMAL", "BACTERIAL", "VIRAL"]
    try:
        assert score_weights(tiny_model, "VIRAL").tolist() == [-0.5, -0.5, 1.0]
        with pytest.raises(ScanSightError, match="no class 'COVID'"):
            score_weights(tiny_model, "COVID")
    finally:
        tiny_model.card.classes = ["NORMAL", "PNEUMONIA"]


@pytest.mark.parametrize("score", [-100.0, 0.0, 100.0])
def test_gradcam_plus_plus_needs_no_exp_of_the_score(score):
    """The paper's exp(score) factor scales the map by a constant (it overflows float32 past about 88): the map
    computed in float64 with it equals ours without it."""
    from core.explain.gradcam import _gradcam_plus_plus_weights

    rng = np.random.default_rng(1)
    activations = rng.random((1, 5, 5, 8))
    gradients = rng.normal(size=(1, 5, 5, 8))
    first = np.exp(np.float64(score)) * gradients
    second, third = first * gradients, first * gradients**2
    alphas = second / (2 * second + third * activations.sum(axis=(1, 2), keepdims=True))
    alphas /= alphas.sum(axis=(1, 2), keepdims=True)
    paper = np.maximum((activations * (np.maximum(first, 0) * alphas).sum(axis=(1, 2), keepdims=True)).sum(-1), 0)
    ours = np.maximum((activations * _gradcam_plus_plus_weights(activations, gradients)).sum(-1), 0)
    np.testing.assert_allclose(ours / ours.max(), paper / paper.max(), rtol=1e-9)


def test_a_cam_layer_the_network_lacks_is_a_typed_error(tiny_model):
    layer = tiny_model.card.cam_layer
    tiny_model.card.cam_layer = "no_such_layer"
    try:
        with pytest.raises(CamLayerError, match="no_such_layer"):
            heatmap(tiny_model, np.zeros((40, 40), np.float32))
    finally:
        tiny_model.card.cam_layer = layer


def test_unknown_cam_method(tiny_model):
    with pytest.raises(UnknownCamMethodError):
        heatmap(tiny_model, np.zeros((40, 40), np.float32), method="saliency-magic")


def test_overlay_is_rgb8_and_shows_the_heatmap():
    image = np.zeros((50, 60), np.float32)
    cam = np.zeros((50, 60), np.float32)
    cam[:, 30:] = 1.0
    out = overlay(image, cam, alpha=0.5)
    assert out.shape == (50, 60, 3) and out.dtype == np.uint8
    assert out[:, 40:, 0].mean() > out[:, :20, 0].mean()  # jet: hot = red, cold = blue
    assert overlay(image, cam, alpha=0.0).max() == 0


@pytest.mark.slow
def test_every_committed_model_loads_through_its_card():
    cards = list_cards(WEIGHTS_DIR)
    if not cards:
        pytest.skip("no committed weights yet")
    for card in cards.values():
        assert card.sha256 == sha256_of(card.weights_path), card.name
        assert card.weights_path.stat().st_size < 10 * 1024 * 1024
        for member, path in zip(card.members, card.member_paths, strict=True):  # an ensemble's other networks
            assert member["sha256"] == sha256_of(path) and path.stat().st_size < 10 * 1024 * 1024, path.name
        model = ScanModel.load(card.name)
        assert model.keras_model.output_shape[-1] == len(card.classes)
        assert card.threshold_method and card.data and card.metrics.get("validation")


def test_pdf_report_is_a_pdf_with_its_images_and_the_notice(tiny_model):
    from core.io.report import ReportContent, build_pdf

    image = np.zeros((60, 80, 3), np.uint8)
    pdf = build_pdf(
        ReportContent(
            title="Chest X-ray", card=tiny_model.card, image=image, overlay=image + 50, overlay_caption="Grad-CAM",
            findings=[("P(PNEUMONIA)", "73.0%"), ("Area", "120 mm²")], file_name="x.png",
        )
    )  # fmt: skip
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Subtype /Image") >= 2
    assert len(pdf) > 2000


def test_each_committed_rule_is_the_one_its_test_figures_were_measured_with():
    """A card that decides yes/no by a rule records that rule, every key as the card has it, beside its test
    figures (the evaluation once let its 0.5 cut on the decisions overwrite the rule's own threshold)."""
    ruled = [card for card in list_cards().values() if "rule" in card.decision_rule and card.metrics.get("test")]
    assert ruled or "mri-tumour" not in list_cards()
    for card in ruled:
        recorded = card.metrics["test"].get("decision_rule") or {}
        assert {key: recorded.get(key) for key in card.decision_rule} == card.decision_rule, card.name


def test_an_answer_gets_a_caveat_only_where_its_test_set_often_got_it_wrong(tmp_path):
    card = make_model(tmp_path)
    card.classes, card.positive_class = ["NORMAL", "PNEUMONIA"], "PNEUMONIA"
    card.metrics = {"test": {"confusion_matrix": [[165, 69], [5, 385]]}}  # specificity 70.5%, sensitivity 98.7%
    caveat = card.answer_caveat("PNEUMONIA")
    assert caveat and "of the 234 NORMAL images it answered **PNEUMONIA** for 69 (29%)" in caveat
    assert card.answer_caveat("NORMAL") is None and card.answer_caveat("VIRAL") is None  # a label it does not have
    card.metrics = {"test": {"confusion_matrix": [[230, 4], [60, 330]]}}  # sensitivity 84.6%
    assert "of the 390 PNEUMONIA images it answered **NORMAL** for 60 (15%)" in card.answer_caveat("NORMAL")
    assert card.answer_caveat("PNEUMONIA") is None
    card.metrics = {"test": {"confusion_matrix": [[90, 10], [0, 0]]}}  # exactly 10%; no PNEUMONIA images at all
    assert "for 10 (10%)" in card.answer_caveat("PNEUMONIA") and card.answer_caveat("NORMAL") is None
    card.classes = ["PNEUMONIA", "NORMAL"]  # positive listed first: the matrix is still (negative, positive)
    card.metrics = {"test": {"confusion_matrix": [[165, 69], [5, 385]]}}
    assert "of the 234 NORMAL images" in card.answer_caveat("PNEUMONIA")
    card.classes, card.positive_class = ["NORMAL", "BACTERIAL", "VIRAL"], None
    matrix = [[166, 14, 54], [2, 217, 23], [0, 17, 131]]
    card.metrics = {"test": {"confusion_matrix": matrix, "classes": ["NORMAL", "BACTERIAL", "VIRAL"]}}
    assert "of the 234 NORMAL images it answered **VIRAL** for 54 (23%)." in card.answer_caveat("VIRAL")  # 23/242 not
    assert "of the 148 VIRAL images it answered **BACTERIAL** for 17 (11%)." in card.answer_caveat("BACTERIAL")
    assert card.answer_caveat("NORMAL") is None  # 14 of 242 bacterial (6%) at most
    card.metrics = {"test": {"confusion_matrix": [[1, 2], [3, 4]], "classes": ["NORMAL", "BACTERIAL", "VIRAL"]}}
    assert card.answer_caveat("VIRAL") is None  # a matrix that does not fit its classes: nothing to say
    card.metrics = {}
    assert card.answer_caveat("VIRAL") is None  # not evaluated
