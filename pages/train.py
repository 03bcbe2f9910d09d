"""Train: a new head on the frozen backbone, as a background job with live curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from lib.errors import TransferLabError
from lib.evaluate import load_thumbnail
from lib.jobs.tasks import scratch_spec, train_spec
from lib.models import HeadConfig
from lib.plots.training import make_batch_loss_figure, make_confusion_figure, make_history_figure
from lib.training import OPTIMIZERS, TrainConfig, feature_cache_reason
from lib.ui import navigation, resources, state
from lib.ui.jobs import finished_note, job_panel, submit_job_ui

LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BATCH_SIZES = (8, 16, 32, 64, 128)
GALLERY_COLUMNS = 8
JOB_KEYS = (state.TRAIN_JOB, state.SCRATCH_JOB)
JOB_TITLES = {state.TRAIN_JOB: "Training", state.SCRATCH_JOB: "Training from scratch (baseline)"}
# Every default comes from TrainConfig, the one source the CLI reads too.
DEFAULTS = TrainConfig()


def require_dataset():
    """The session's dataset, or a message with a button to the Data page (and stop)."""
    try:
        dataset = state.current_dataset()
    except TransferLabError as e:
        st.error(str(e))
        dataset = None
    if dataset is None:
        st.info("Choose a dataset first.")
        navigation.page_link(navigation.DATA, label="Go to Data")
        st.stop()
    return dataset


def settings_ui(backbone, disabled: bool) -> TrainConfig:
    """Every training setting; returns the config (not yet validated). Defaults persist per session."""
    saved = state.train_config()
    spec = backbone.spec
    cuts = list(spec.cut_points)
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Body and head**")
        cut = st.selectbox("Cut the backbone after", cuts, index=cuts.index(saved.get("cut", cuts[-1]))
                           if saved.get("cut") in cuts else len(cuts) - 1, key="train_cut",
                           disabled=disabled, help="Lower cuts keep more general features (and a "
                           "smaller body); the top one keeps everything ImageNet taught.")
        hidden = st.number_input("Hidden units (0 = none)", 0, 2048, int(saved.get("hidden", DEFAULTS.head.hidden_units)), 32,
                                 key="train_hidden", disabled=disabled)
        dropout = st.slider("Dropout", 0.0, 0.8, float(saved.get("dropout", DEFAULTS.head.dropout)), 0.05,
                            key="train_dropout", disabled=disabled)
    with c2:
        st.markdown("**Optimizer**")
        optimizer = st.selectbox("Optimizer", OPTIMIZERS, OPTIMIZERS.index(saved.get("optimizer", DEFAULTS.optimizer)),
                                 key="train_optimizer", disabled=disabled)
        lr = st.select_slider("Learning rate", LEARNING_RATES, saved.get("lr", DEFAULTS.learning_rate),
                              format_func=lambda v: f"{v:g}", key="train_lr", disabled=disabled)
        batch = st.select_slider("Batch size", BATCH_SIZES, saved.get("batch", DEFAULTS.batch_size), key="train_batch",
                                 disabled=disabled)
        smoothing = st.slider("Label smoothing", 0.0, 0.3, float(saved.get("smoothing", DEFAULTS.label_smoothing)), 0.05,
                              key="train_smoothing", disabled=disabled)
    with c3:
        st.markdown("**Budget**")
        epochs = st.number_input("Epochs", 1, 200, int(saved.get("epochs", DEFAULTS.epochs)), key="train_epochs",
                                 disabled=disabled)
        patience = st.number_input("Early stopping patience (0 = off)", 0, 50,
                                   int(saved.get("patience", DEFAULTS.early_stopping_patience or 0)), key="train_patience",
                                   disabled=disabled)
        use_cache = st.toggle("Use the feature cache", bool(saved.get("use_cache", DEFAULTS.use_feature_cache)),
                              key="train_use_cache", disabled=disabled,
                              help="Run the frozen body once over the data and train the head on "
                                   "the stored features: the same model, much faster.")
    state.set_train_config({"cut": cut, "hidden": hidden, "dropout": dropout,
                               "optimizer": optimizer, "lr": lr, "batch": batch,
                               "smoothing": smoothing, "epochs": epochs, "patience": patience,
                               "use_cache": use_cache})
    split = state.data_split()
    return TrainConfig(
        backbone=spec.name, data=state.current_data_spec(), cut=cut,
        head=HeadConfig(hidden_units=int(hidden), dropout=float(dropout)), optimizer=optimizer,
        learning_rate=float(lr), batch_size=int(batch), epochs=int(epochs),
        label_smoothing=float(smoothing), early_stopping_patience=int(patience) or None,
        augment=state.augment_config(), val_split=split["val"], test_split=split["test"],
        seed=split["seed"], use_feature_cache=bool(use_cache), owner=state.session_owner(),
    )


def summary_section(config: TrainConfig, num_classes: int) -> None:
    """Parameter counts for these settings, and whether the feature cache applies."""
    counts = resources.param_counts(config.backbone, config.cut, config.head.hidden_units,
                                   config.head.dropout, num_classes)
    c1, c2, c3 = st.columns(3)
    c1.metric("Trainable parameters (head)", f"{counts['trainable']:,}")
    c2.metric("Frozen parameters (body)", f"{counts['non_trainable']:,}")
    reason = feature_cache_reason(config)
    c3.metric("Feature cache", "on" if reason is None else "off")
    if reason is not None:
        st.caption(f"Feature cache not used: {reason}")


def start_ui(config: TrainConfig, backbone, dataset, busy: bool) -> None:
    """The Start button: validates the settings, then starts the job."""
    if st.button("Start training", type="primary", icon=":material/play_arrow:", key="train_start",
                 disabled=busy):
        try:
            config.validate()
        except TransferLabError as e:
            st.error(str(e))
            return
        submit_job_ui(state.TRAIN_JOB, train_spec(config),
                      local={"backbone": backbone, "dataset": dataset})


def extract_progress_ui(snap: dict) -> None:
    """Feature-extraction progress, when the job extracted features."""
    extract = snap["events"].get("extract")
    if extract:
        last = extract[-1]
        st.progress(last["done"] / max(1, last["total"]),
                    text=f"Feature extraction: {last['done']}/{last['total']} images")


def live_charts_ui(snap: dict, baseline: pd.DataFrame | None = None, name: str = "") -> None:
    """Per-batch loss and per-epoch curves from the job's rows so far (nothing before the first)."""
    if not snap["events"].get("batch"):
        return
    epochs = pd.DataFrame(snap["events"].get("epoch", []))
    left, right = st.columns(2)
    left.plotly_chart(make_batch_loss_figure(snap["events"].get("batch", [])), key=f"{name}_batch")
    if baseline is not None:  # the from-scratch run, drawn over the transfer curves
        right.plotly_chart(make_history_figure(baseline, "accuracy", overlay=epochs),
                           key=f"{name}_epochs")
    else:
        right.plotly_chart(make_history_figure(epochs, "accuracy"), key=f"{name}_epochs")


def live_view(job_key: str):
    """The job panel's live view for `job_key`: extraction progress and the curves so far."""
    def draw(snap: dict) -> None:
        extract_progress_ui(snap)
        transfer = state.get_result(state.TRAIN_RESULT)
        baseline = transfer.history if job_key == state.SCRATCH_JOB and transfer else None
        live_charts_ui(snap, baseline, name=job_key)
    return draw


def metrics_section(result) -> None:
    """Validation and test accuracy, epochs and time, from the result's metrics."""
    metrics, evaluation = result.metrics, result.metrics.get("evaluation") or {}
    c1, c2, c3, c4 = st.columns(4)
    val = metrics.get("val_accuracy")
    c1.metric("Validation accuracy", f"{val:.1%}" if val is not None else "–")
    if evaluation:
        c2.metric(f"{evaluation['split'].capitalize()} accuracy", f"{evaluation['accuracy']:.1%}",
                  help=f"On {evaluation['n']} held-out images"
                  + {"litert": ", the body run on LiteRT.", "tf": ", the body run on TensorFlow."}
                  .get(evaluation.get("engine", ""), "."))
    c3.metric("Epochs", len(result.history))
    cache = metrics.get("feature_cache") or {}
    engine = {"litert": "LiteRT", "tf": "TensorFlow"}.get(cache.get("engine") or "", "")
    c4.metric("Feature cache", ("used" + (f" ({engine})" if engine else "")) if result.used_feature_cache
              else "not used",
              help=cache.get("reason") or result.feature_cache_reason
              or (f"The frozen body ran on {engine}." if engine else None))
    if not result.pretrained:
        st.warning("This backbone had random weights: these numbers are not transfer learning.")
    st.caption(f"Run saved in `{result.run_dir}`.")


def curves_section(result, scratch) -> None:
    """Per-epoch loss and accuracy, with the from-scratch baseline overlaid when there is one."""
    overlay = scratch.history if scratch is not None else None
    left, right = st.columns(2)
    left.plotly_chart(make_history_figure(result.history, "loss", overlay=overlay,
                                          overlay_name="scratch"), key="train_hist_loss")
    right.plotly_chart(make_history_figure(result.history, "accuracy", overlay=overlay,
                                           overlay_name="scratch"), key="train_hist_acc")
    if scratch is not None:
        ours = result.metrics.get("val_accuracy") or 0.0
        theirs = scratch.metrics.get("val_accuracy") or 0.0
        st.info(f"Validation accuracy: transfer **{ours:.1%}** vs from scratch **{theirs:.1%}** "
                "with the same data and epochs. Transfer starts higher, climbs faster and ends higher.")


def evaluation_section(result) -> None:
    """Per-class metrics, a clickable confusion matrix, and the top losses."""
    evaluation = result.metrics.get("evaluation")
    if not evaluation:
        return
    st.subheader(f"On the {evaluation['split']} images")
    left, right = st.columns([2, 3])
    with left:
        st.dataframe([{"class": name, **values} for name, values in evaluation["per_class"].items()],
                     hide_index=True, column_config={
                         "precision": st.column_config.NumberColumn(format="percent"),
                         "recall": st.column_config.NumberColumn(format="percent")})
    with right:
        event = st.plotly_chart(make_confusion_figure(evaluation["confusion"], evaluation["classes"]),
                                on_select="rerun", selection_mode="points", key="train_confusion")
    cell = selected_cell(event)
    if cell is not None:
        cell_gallery(result, *cell)
    else:
        st.caption("Click a cell of the confusion matrix to see its images.")
    top_losses_section(evaluation["top_losses"])


def selected_cell(event) -> tuple[int, int] | None:
    """(true index, predicted index) of the clicked confusion cell, from its customdata."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for point in points:
        data = point.get("customdata")
        if data is not None and len(data) >= 2:
            return int(data[0]), int(data[1])
    return None


def cell_gallery(result, true_index: int, pred_index: int) -> None:
    names = result.class_names
    with st.spinner("Finding those images…"):
        records = state.confusion_cell_records(result, true_index, pred_index)
    st.markdown(f"**True `{names[true_index]}`, predicted `{names[pred_index]}`: "
                f"{len(records)} images**")
    image_grid([r.path for r in records], [r.source.rsplit("/", 1)[-1] for r in records])


def top_losses_section(top_losses: list[dict]) -> None:
    if not top_losses:
        return
    st.markdown("**Top losses**: the images the model got most wrong (or least sure right)")
    image_grid([t["path"] for t in top_losses],
               [f"{t['true']} → {t['pred']} ({t['prob']:.0%}), loss {t['loss']:.2f}" for t in top_losses])


def image_grid(paths: list[str], captions: list[str]) -> None:
    """Thumbnails in rows of `GALLERY_COLUMNS`; an image no longer on disk keeps its caption."""
    for start in range(0, len(paths), GALLERY_COLUMNS):
        cols = st.columns(GALLERY_COLUMNS)
        for col, path, caption in zip(cols, paths[start:start + GALLERY_COLUMNS],
                                      captions[start:start + GALLERY_COLUMNS], strict=False):
            thumbnail = load_thumbnail(path)
            if thumbnail is None:
                col.caption(f"{caption} (image no longer readable: {Path(path).name})")
            else:
                col.image(thumbnail, caption=caption, width="stretch")


def scratch_ui(result, dataset, busy: bool) -> None:
    """The "compare with training from scratch" button."""
    if st.button("Compare with training from scratch", icon=":material/compare_arrows:",
                 key="train_scratch", disabled=busy,
                 help="Same architecture, random weights, every layer trainable, same data and epochs."):
        state.set_result(state.SCRATCH_RESULT, None)
        submit_job_ui(state.SCRATCH_JOB, scratch_spec(result.config), local={"dataset": dataset})


st.title("Train")
st.caption("Freeze the pretrained backbone and train a new head on your classes.")
data_index = require_dataset()
try:
    session_backbone = state.current_backbone()
except TransferLabError as e:
    st.error(str(e))
    navigation.page_link(navigation.ZOO, label="Choose another backbone")
    st.stop()
if not session_backbone.pretrained:
    st.warning(f"{session_backbone.spec.name} has random weights here (pretrained weights are not "
               "available offline): the head will learn from random features.")
st.markdown(f"**{data_index.name}**: {data_index.report.summary()} · backbone "
            f"`{session_backbone.spec.name}` ({session_backbone.spec.input_size} px)")
running = [k for k in JOB_KEYS if state.job_running(k)]
settings_open = not running and state.get_result(state.TRAIN_RESULT) is None
with st.expander("Settings", expanded=settings_open):
    train_config = settings_ui(session_backbone, disabled=bool(running))
    try:
        summary_section(train_config, data_index.num_classes)
    except TransferLabError as e:
        st.error(str(e))
start_ui(train_config, session_backbone, data_index, busy=bool(running))
for key in running:
    job_panel(key, JOB_TITLES[key], live=live_view(key))
for key in JOB_KEYS:
    if key not in running:
        finished_note(key, stopped="the best epoch so far is kept.")
train_result = state.get_result(state.TRAIN_RESULT)
if train_result is not None and state.TRAIN_JOB not in running:
    st.header("Results")
    metrics_section(train_result)
    curves_section(train_result, state.get_result(state.SCRATCH_RESULT))
    scratch_ui(train_result, data_index, busy=bool(running))
    evaluation_section(train_result)
    navigation.page_link(navigation.FINE_TUNE, label="Next: fine-tune the top layers")
