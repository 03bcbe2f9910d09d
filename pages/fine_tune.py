"""Fine-tune: unfreeze the top of this session's trained model and train on at a lower rate."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.errors import TransferLabError
from lib.jobs import Job, job_callbacks
from lib.plots.training import make_history_figure
from lib.training import TrainCallbacks, TrainConfig, fine_tune
from lib.ui import navigation, state
from lib.ui.jobs import finished_note, job_panel, start_job_ui

# Defaults shared with the CLI's `train --fine-tune-epochs`: TrainConfig is their one source.
DEFAULTS = TrainConfig()
DEFAULT_EPOCHS = 3  # TrainConfig's default is 0 (no fine-tuning); here the person asked for it
LR_CHOICES = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
CALLBACK_KEYS = ("on_batch_end", "on_epoch_end", "on_extract", "on_message")

BATCHNORM_NOTE = """
**Why BatchNorm stays frozen, in inference mode.** A BatchNormalization layer normalises with the
mean and variance it measured on ImageNet. In training mode it would use the statistics of each
small batch of *your* images instead, and update its stored ones toward them: the features the head
learned would shift under it, and the first fine-tuning steps would undo the frozen phase. So the body
runs with `training=False` and every BatchNorm layer stays non-trainable, as the Keras
transfer-learning guide recommends; only the convolution weights above the cut are adjusted, slowly.
"""


def require_trained():
    """This session's frozen-phase result, or a message with a button to Train (and stop)."""
    result = state.get_result(state.TRAIN_RESULT)
    if result is None or result.history.empty:
        st.info("Fine-tuning starts from a trained head. Train one first.")
        navigation.page_link(navigation.TRAIN, label="Go to Train")
        st.stop()
    return result


def settings_ui(result, disabled: bool) -> tuple[int, float, int]:
    """How many top layers to unfreeze, the learning rate and epochs: `(unfreeze, lr, epochs)`."""
    n_layers = state.body_layer_count(result)
    base_lr = result.config.learning_rate
    default_lr = min(LR_CHOICES, key=lambda v: abs(v - base_lr * DEFAULTS.fine_tune_lr_factor))
    c1, c2, c3 = st.columns(3)
    unfreeze = c1.slider("Unfreeze the top N layers", 1, n_layers, min(DEFAULTS.unfreeze, n_layers),
                         key="finetune_unfreeze", disabled=disabled,
                         help="Counted as in the Keras guide: every layer of the body, weightless "
                              "ones included. BatchNorm layers stay frozen whatever N is.")
    lr = c2.select_slider("Learning rate", LR_CHOICES, default_lr, format_func=lambda v: f"{v:g}",
                          key="finetune_lr", disabled=disabled,
                          help=f"The head trained at {base_lr:g}; fine-tuning uses about 10x lower.")
    epochs = c3.number_input("Epochs", 1, 100, DEFAULT_EPOCHS, key="finetune_epochs",
                             disabled=disabled)
    return int(unfreeze), float(lr), int(epochs)


def layers_section(result, unfreeze: int) -> None:
    """The body's layers, top first, marked trainable, frozen or BatchNorm (frozen)."""
    rows = state.unfreeze_preview(result, unfreeze)
    trainable = [r for r in rows if r["trainable"] and r["params"]]
    st.caption(f"{len(trainable)} layers with weights become trainable "
               f"({sum(r['params'] for r in trainable):,} parameters); the rest stay frozen.")
    table = [{"layer": r["name"], "type": r["type"],
              "state": "BatchNorm (frozen)" if r["is_batchnorm"] else
                       "trainable" if r["trainable"] else "frozen",
              "params": r["params"]} for r in reversed(rows)]
    st.dataframe(table, hide_index=True, height=260, key="finetune_layers")


def finetune_target(result, unfreeze: int, lr: float, epochs: int):
    """The job body (runs on the job's thread, no st.* calls)."""
    factor = lr / result.config.learning_rate

    def target(job: Job):
        cbs = job_callbacks(job, epochs=epochs, epoch_offset=len(result.history))
        return fine_tune(result, epochs=epochs, unfreeze=unfreeze, lr_factor=factor,
                         stop_event=job.stop_event,
                         callbacks=TrainCallbacks(**{k: cbs[k] for k in CALLBACK_KEYS}))
    return target


def start_ui(result, unfreeze: int, lr: float, epochs: int, busy: bool) -> None:
    if st.button("Start fine-tuning", type="primary", icon=":material/play_arrow:",
                 key="finetune_start", disabled=busy):
        start_job_ui(state.FINETUNE_JOB, "finetune", finetune_target(result, unfreeze, lr, epochs))


def live_view(result):
    """The job panel's live view: the two-phase chart growing as fine-tuning runs."""
    def draw(snap: dict) -> None:
        new_epochs = snap["events"].get("epoch", [])
        if new_epochs:
            charts_ui(pd.concat([result.history, pd.DataFrame(new_epochs)], ignore_index=True),
                      "live")
    return draw


def charts_ui(history: pd.DataFrame, name: str) -> None:
    left, right = st.columns(2)
    left.plotly_chart(make_history_figure(history, "loss"), key=f"finetune_{name}_loss")
    right.plotly_chart(make_history_figure(history, "accuracy"), key=f"finetune_{name}_acc")


def before_after_section(tuned) -> None:
    """Validation and held-out accuracy before and after fine-tuning, side by side."""
    before = tuned.metrics.get("before_fine_tune") or {}
    before_eval, after_eval = before.get("evaluation") or {}, tuned.metrics.get("evaluation") or {}
    rows = [("Validation accuracy", before.get("val_accuracy"), tuned.metrics.get("val_accuracy"))]
    if before_eval and after_eval:
        rows.append((f"{after_eval['split'].capitalize()} accuracy", before_eval.get("accuracy"),
                     after_eval.get("accuracy")))
    for label, old, new in rows:
        c1, c2 = st.columns(2)
        c1.metric(f"{label}, frozen head", f"{old:.1%}" if old is not None else "–")
        delta = f"{(new - old) * 100:+.1f} pts" if old is not None and new is not None else None
        c2.metric(f"{label}, fine-tuned", f"{new:.1%}" if new is not None else "–", delta=delta)


st.title("Fine-tune")
st.caption("Unfreeze the top layers of the body and train on at a low learning rate.")
frozen_result = require_trained()
busy = state.job_running(state.FINETUNE_JOB)
try:
    with st.spinner("Copying the body to list its layers…"):  # once per trained model
        state.body_layer_count(frozen_result)
    n_unfreeze, ft_lr, ft_epochs = settings_ui(frozen_result, disabled=busy)
    with st.expander("Layers of the body", expanded=False):
        layers_section(frozen_result, n_unfreeze)
except TransferLabError as e:
    st.error(str(e))
    st.stop()
st.markdown(BATCHNORM_NOTE)
start_ui(frozen_result, n_unfreeze, ft_lr, ft_epochs, busy)
if busy:
    job_panel(state.FINETUNE_JOB, "Fine-tuning", live=live_view(frozen_result))
else:
    finished_note(state.FINETUNE_JOB, stopped="the best fine-tuning epoch so far is kept.")
    tuned_result = state.get_result(state.FINETUNE_RESULT)
    if tuned_result is not None:
        st.header("Before and after")
        before_after_section(tuned_result)
        charts_ui(tuned_result.history, "done")
        navigation.page_link(navigation.PREDICT, label="Next: predict with the fine-tuned model")
    else:
        charts_ui(frozen_result.history, "frozen")
