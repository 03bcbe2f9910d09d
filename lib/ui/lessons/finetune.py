"""The `frozen-vs-finetune` lesson's live part: the two-phase curve, and parameter counts as blocks
are unfrozen."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from lib.lessons import Lesson
from lib.plots.fine_tuning import make_param_counts_figure
from lib.ui.lessons.common import set_url, trained_result, url_value

SAME_RATE_TRACE = "the head's rate"


def finetune_ui(lesson: Lesson, interactive: bool) -> None:
    """The kept (or clicked) run's curves, a toggle for the same-rate branch and a blocks slider."""
    result = trained_result(lesson, interactive)
    if result is None:
        return
    numbers = result["numbers"]
    same = url_value("same", 0, int) == 1
    if interactive:
        same = st.toggle("Also fine-tune at the head's own rate (10× higher)", value=same,
                         key="lessons_finetune_same")
        set_url(same=int(same))
    rates = numbers["rates"]
    columns = st.columns(3 if same else 2)
    columns[0].metric("Head only (body frozen)", f"{numbers['frozen']:.0%}")
    columns[1].metric(f"Fine-tuned at {rates['low']:g}", f"{numbers['finetune_low_rate']:.0%}")
    if same:
        columns[2].metric(f"Fine-tuned at {rates['same']:g}", f"{numbers['finetune_same_rate']:.0%}")
    st.caption("Validation accuracy at the end of each curve.")
    for name in ("curves", "loss"):
        st.plotly_chart(show_same_rate(result["figures"][name], same),
                        key=f"lessons_finetune_{name}_{interactive}")
    params_part(numbers["params"], interactive)


def show_same_rate(figure: go.Figure, same: bool) -> go.Figure:
    """A copy of a curves figure with the same-rate branch shown or hidden."""
    copy = go.Figure(figure)
    copy.for_each_trace(lambda trace: trace.update(visible=True if same else "legendonly")
                        if SAME_RATE_TRACE in (trace.name or "") else None)
    return copy


def params_part(params: dict, interactive: bool) -> None:
    """Trainable and frozen parameter counts for the slider's number of unfrozen blocks."""
    blocks = params["blocks"]
    chosen = url_value("blocks", params["unfrozen_blocks"], int)
    chosen = chosen if chosen in blocks else params["unfrozen_blocks"]
    if interactive:
        chosen = st.select_slider("Top blocks unfrozen (0: only the head trains)", blocks,
                                  value=chosen, key="lessons_finetune_blocks")
        set_url(blocks=chosen)
    i = blocks.index(chosen)
    left, right = st.columns(2)
    left.metric("Trainable parameters", f"{params['trainable'][i]:,}")
    right.metric("Frozen (non-trainable) parameters", f"{params['non_trainable'][i]:,}")
    st.plotly_chart(make_param_counts_figure(blocks, params["trainable"], params["non_trainable"],
                                             selected=chosen),
                    key=f"lessons_finetune_params_{interactive}")
