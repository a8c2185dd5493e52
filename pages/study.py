"""Study: which preprocessing + model family wins under patient-grouped K-fold cross-validation."""

import plotly.graph_objects as go
import streamlit as st

from core.checks.study import load_results
from core.models.study_networks import FAMILY_LABELS
from pages.shared.widgets import ensure_frame

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("🧪 Preprocessing × model study")

results = load_results()
if results is None:
    st.info("No study results in `weights/study.json` yet: run `python -m core.checks.study` (see the README).")
    st.stop()

config = results["config"]
summary = results["summary"]
st.markdown(
    f"Task: **{results['task']}** — {results['n_images']:,} images of {results['n_patients']:,} patients, "
    f"{config['folds']}-fold cross-validation, {config['size']}×{config['size']} input, {config['epochs']} epochs "
    "per run. The official test set is not used: this study only ranks the options."
)
total = len(config["preprocessings"]) * len(config["families"])
if summary["complete_pairs"] < total:
    st.warning(
        f"The study is not finished: {summary['complete_pairs']} of {total} pairs have all {config['folds']} folds "
        f"({len(results['runs'])} of {total * config['folds']} runs). It resumes where it stopped.",
        icon="⏳",
    )
winner = summary.get("winner")
if winner:
    st.success(
        f"Best pair by mean AUC: **{winner['preprocessing']}** + **{FAMILY_LABELS[winner['family']]}**, "
        f"AUC {winner['auc_mean']:.3f} ± {winner['auc_std']:.3f}, accuracy {winner['accuracy_mean']:.1%}.",
        icon="🏆",
    )

table = summary["table"]
metric = st.radio("Metric", ["AUC", "accuracy"], horizontal=True, key="study_metric")
field = "auc" if metric == "AUC" else "accuracy"
preprocessings = [p for p in config["preprocessings"] if any(r["preprocessing"] == p for r in table)]
figure = go.Figure()
for family in config["families"]:
    rows = {r["preprocessing"]: r for r in table if r["family"] == family}
    if not rows:
        continue
    figure.add_trace(
        go.Scatter(  # dots with intervals, not bars: the axis does not start at 0, so bar lengths would mislead
            mode="markers",
            marker={"size": 11},
            name=FAMILY_LABELS[family],
            x=preprocessings,
            y=[rows[p][f"{field}_mean"] if p in rows else None for p in preprocessings],
            error_y={"type": "data", "array": [rows[p][f"{field}_std"] if p in rows else 0 for p in preprocessings]},
        )
    )
low = min((r[f"{field}_mean"] - r[f"{field}_std"] for r in table), default=0.5)
figure.update_layout(
    scattermode="group", yaxis={"title": f"{metric}, mean ± std over folds", "range": [max(0.0, low - 0.05), 1.0]},
    xaxis={"title": "preprocessing"}, height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10},
)  # fmt: skip
st.plotly_chart(figure, width="stretch")

st.dataframe(
    [
        {
            "preprocessing": r["preprocessing"],
            "model family": FAMILY_LABELS[r["family"]],
            "folds": r["folds_done"],
            "AUC": f"{r['auc_mean']:.3f} ± {r['auc_std']:.3f}",
            "accuracy": f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}",
            "seconds per fold": round(r["seconds_mean"]),
        }
        for r in sorted(table, key=lambda r: -r["auc_mean"])
    ],
    hide_index=True,
    width="stretch",
)
with st.expander("What each option is"):
    st.json({"preprocessing": results["preprocessing_steps"], "families": results["families"]}, expanded=True)
st.caption(
    "Reproduce: `python -m core.checks.study --data ../shared/data/chest_xray/train --folds 5 --epochs "
    f"{config['epochs']} --out weights/study.json` (resumable). Folds are grouped by patient: no child's images are "
    "in both the training and the held-out fold."
)
