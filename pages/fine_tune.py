"""Fine-tune: unfreeze the top of this session's trained model and train on at a lower rate."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib import ui_state
from lib.errors import TransferLabError
from lib.jobs import Job, format_seconds, job_callbacks, start_job
from lib.plots.training import make_history_figure
from lib.training import TrainCallbacks, fine_tune

LIVE_REFRESH_S = 1.5  # as on Train: live enough, and leaves CPU to the training
DEFAULT_UNFREEZE = 20
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
    result = ui_state.get_result(ui_state.TRAIN_RESULT)
    if result is None or result.history.empty:
        st.info("Fine-tuning starts from a trained head. Train one first.")
        ui_state.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    return result


def settings_ui(result, disabled: bool) -> tuple[int, float, int]:
    """How many top layers to unfreeze, the learning rate and epochs: `(unfreeze, lr, epochs)`."""
    n_layers = ui_state.body_layer_count(result)
    base_lr = result.config.learning_rate
    default_lr = min(LR_CHOICES, key=lambda v: abs(v - base_lr / 10))
    c1, c2, c3 = st.columns(3)
    unfreeze = c1.slider("Unfreeze the top N layers", 1, n_layers, min(DEFAULT_UNFREEZE, n_layers),
                         key="finetune_unfreeze", disabled=disabled,
                         help="Counted as in the Keras guide: every layer of the body, weightless "
                              "ones included. BatchNorm layers stay frozen whatever N is.")
    lr = c2.select_slider("Learning rate", LR_CHOICES, default_lr, format_func=lambda v: f"{v:g}",
                          key="finetune_lr", disabled=disabled,
                          help=f"The head trained at {base_lr:g}; fine-tuning uses about 10x lower.")
    epochs = c3.number_input("Epochs", 1, 100, 3, key="finetune_epochs", disabled=disabled)
    return int(unfreeze), float(lr), int(epochs)


def layers_section(result, unfreeze: int) -> None:
    """The body's layers, top first, marked trainable, frozen or BatchNorm (frozen)."""
    rows = ui_state.unfreeze_preview(result, unfreeze)
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
        job = start_job("finetune", finetune_target(result, unfreeze, lr, epochs),
                        slots=ui_state.job_slots())
        ui_state.set_job(ui_state.FINETUNE_JOB, job)
        st.rerun()


@st.fragment(run_every=LIVE_REFRESH_S)
def live_section(result) -> None:
    """The two-phase chart growing as fine-tuning runs; reruns the page when it ends."""
    job = ui_state.get_job(ui_state.FINETUNE_JOB)
    snap = job.snapshot()
    if snap["status"] != "running":
        st.rerun()
    eta = f" — about {format_seconds(snap['eta'])} left" if snap["eta"] else ""
    st.progress(snap["fraction"], text=f"{snap['message']}{eta}")
    if st.button("Stop", icon=":material/stop:", key="finetune_stop", disabled=snap["stopping"]):
        job.stop()
        st.rerun(scope="fragment")
    new_epochs = snap["events"].get("epoch", [])
    if new_epochs:
        charts_ui(pd.concat([result.history, pd.DataFrame(new_epochs)], ignore_index=True), "live")


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


def finished_ui() -> None:
    job = ui_state.get_job(ui_state.FINETUNE_JOB)
    if job is None:
        return
    snap = job.snapshot()
    if snap["status"] == "failed":
        st.error(snap["error"])
    elif snap["status"] == "stopped":
        st.warning("Stopped; the best fine-tuning epoch so far is kept.")


st.title("Fine-tune")
st.caption("Unfreeze the top layers of the body and train on at a low learning rate.")
frozen_result = require_trained()
ft_job = ui_state.get_job(ui_state.FINETUNE_JOB)
busy = ft_job is not None and ft_job.running
try:
    with st.spinner("Copying the body to list its layers…"):  # once per trained model
        ui_state.body_layer_count(frozen_result)
    n_unfreeze, ft_lr, ft_epochs = settings_ui(frozen_result, disabled=busy)
    with st.expander("Layers of the body", expanded=False):
        layers_section(frozen_result, n_unfreeze)
except TransferLabError as e:
    st.error(str(e))
    st.stop()
st.markdown(BATCHNORM_NOTE)
start_ui(frozen_result, n_unfreeze, ft_lr, ft_epochs, busy)
if busy:
    live_section(frozen_result)
else:
    finished_ui()
    tuned_result = ui_state.get_result(ui_state.FINETUNE_RESULT)
    if tuned_result is not None:
        st.header("Before and after")
        before_after_section(tuned_result)
        charts_ui(tuned_result.history, "done")
        ui_state.page_link("pages/predict.py", label="Next: predict with the fine-tuned model",
                           icon=":material/image_search:")
    else:
        charts_ui(frozen_result.history, "frozen")
