"""Fine-tune: unfreeze the top blocks of this session's trained model and train on at a lower rate,
with a learning-rate finder to choose the rate."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from lib.backbones.registry import get_spec
from lib.errors import TransferLabError
from lib.jobs.tasks import finetune_spec
from lib.models import count_blocks, get_body, top_blocks_layer_count
from lib.plots.training import make_history_figure, make_lr_find_figure
from lib.training import SELECTED_BY, TrainConfig, find_learning_rate
from lib.training.config import SUGGESTED_FINE_TUNE_EPOCHS
from lib.ui import navigation, state
from lib.ui.jobs import finished_note, job_panel, submit_job_ui

# Defaults shared with the CLI's `train --fine-tune-epochs`: TrainConfig is their one source.
DEFAULTS = TrainConfig()
LR_CHOICES = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
LR_FINDING = "finetune_lr_finding"
SELECTION_NOTE = (f"The best epoch is chosen by **{SELECTED_BY}** (validation accuracy first; "
                  "validation loss breaks ties), and it must beat the frozen head's best epoch, "
                  "or the frozen weights are kept.")

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
    """How many top blocks to unfreeze, the body's peak rate and epochs: `(blocks, lr, epochs)`."""
    n_blocks = _block_count(result)
    base_lr = result.config.learning_rate
    default_lr = min(LR_CHOICES, key=lambda v: abs(v - base_lr * DEFAULTS.fine_tune_lr_factor))
    c1, c2, c3 = st.columns(3)
    blocks = c1.slider("Unfreeze the top N blocks", 1, n_blocks, min(DEFAULTS.unfreeze_blocks, n_blocks),
                       key="finetune_unfreeze", disabled=disabled,
                       help="Whole blocks of the backbone (they end at its cut points). BatchNorm "
                            "layers stay frozen, in inference mode, whatever N is.")
    lr = c2.select_slider("Peak learning rate (body)", LR_CHOICES, default_lr,
                          format_func=lambda v: f"{v:g}", key="finetune_lr", disabled=disabled,
                          help=f"The head trained at {base_lr:g}. The body's rate warms up for "
                               f"{DEFAULTS.fine_tune_warmup_epochs} epoch to this peak, then decays "
                               f"on a cosine; the head trains {DEFAULTS.fine_tune_head_lr_factor:g}x "
                               "faster. The learning-rate finder below suggests one.")
    epochs = c3.number_input("Epochs", 1, 100, SUGGESTED_FINE_TUNE_EPOCHS, key="finetune_epochs",
                             disabled=disabled)
    return int(blocks), float(lr), int(epochs)


def _block_count(result) -> int:
    return count_blocks(get_body(result.model), get_spec(result.config.backbone).cut_points)


def layers_section(result, blocks: int) -> None:
    """The body's layers, top first, marked trainable, frozen or BatchNorm (frozen)."""
    n_layers = top_blocks_layer_count(get_body(result.model),
                                      get_spec(result.config.backbone).cut_points, blocks)
    rows = state.unfreeze_preview(result, n_layers)
    trainable = [r for r in rows if r["trainable"] and r["params"]]
    st.caption(f"{len(trainable)} layers with weights become trainable "
               f"({sum(r['params'] for r in trainable):,} parameters); the rest stay frozen.")
    table = [{"layer": r["name"], "type": r["type"],
              "state": "BatchNorm (frozen)" if r["is_batchnorm"] else
                       "trainable" if r["trainable"] else "frozen",
              "params": r["params"]} for r in reversed(rows)]
    st.dataframe(table, hide_index=True, height=260, key="finetune_layers")


def lr_finder_ui(result, blocks: int, disabled: bool) -> None:
    """A button that sweeps the body's rate (fastai's `lr_find`) and plots loss against rate."""
    if st.button("Find a learning rate", icon=":material/query_stats:", key="finetune_lr_find",
                 disabled=disabled,
                 help="Trains private copies of the unfrozen blocks and head for about 100 batches "
                      "while the rate grows from 1e-7; nothing is kept."):
        config = replace(result.config, unfreeze=None, unfreeze_from=None, unfreeze_blocks=blocks)
        try:
            with st.spinner("Sweeping the learning rate…"):
                state.put(LR_FINDING, (blocks, find_learning_rate(config, result=result)))
        except TransferLabError as e:
            st.error(str(e))
    finding = state.get(LR_FINDING)
    if finding is None:
        return
    swept_blocks, finding = finding
    st.plotly_chart(make_lr_find_figure(finding.rates, finding.losses, finding.suggestion),
                    key="finetune_lr_figure")
    st.caption(f"Suggested peak rate for {swept_blocks} unfrozen blocks: **{finding.suggestion:.1e}** "
               f"(a tenth of the rate at the lowest loss, {finding.minimum:.1e}). "
               "Pick the nearest learning rate above.")


def start_ui(result, blocks: int, lr: float, epochs: int, busy: bool) -> None:
    if st.button("Start fine-tuning", type="primary", icon=":material/play_arrow:",
                 key="finetune_start", disabled=busy):
        try:
            spec = finetune_spec(result.run_dir, epochs=epochs, unfreeze_blocks=blocks,
                                 lr_factor=lr / result.config.learning_rate,
                                 epoch_offset=len(result.history))
        except TransferLabError as e:
            st.error(str(e))
            return
        # The fine-tuned model goes to a new run folder; the frozen run stays as it was.
        submit_job_ui(state.FINETUNE_JOB, spec, local={"result": result})


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
    st.caption(f"Best epoch chosen by {tuned.metrics.get('selected_by', SELECTED_BY)}.")


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
st.caption(SELECTION_NOTE)
with st.expander("Learning-rate finder", expanded=state.get(LR_FINDING) is not None):
    lr_finder_ui(frozen_result, n_unfreeze, disabled=busy)
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
