"""The `batchnorm-pitfall` lesson's live part: BatchNorm in inference mode and in training mode."""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson
from lib.ui.lessons.common import trained_result


def batchnorm_ui(lesson: Lesson, interactive: bool) -> None:
    """The kept (or clicked) run: both fine-tuning curves, their end points and why they differ."""
    result = trained_result(lesson, interactive)
    if result is None:
        return
    numbers = result["numbers"]
    columns = st.columns(3)
    columns[0].metric("Head only (body frozen)", f"{numbers['frozen']:.0%}")
    columns[1].metric("BatchNorm in inference mode", f"{numbers['bn_inference']:.0%}")
    columns[2].metric("BatchNorm in training mode", f"{numbers['bn_training']:.0%}",
                      delta=f"{numbers['bn_training'] - numbers['bn_inference']:+.0%}")
    st.caption(f"Validation accuracy at the end of each curve; fine-tuning at {numbers['rate']:g} "
               f"in batches of {numbers['batch_size']}.")
    st.plotly_chart(result["figures"]["curves"], key=f"lessons_batchnorm_curves_{interactive}")
    images = "one image" if numbers["batch_size"] == 1 else f"{numbers['batch_size']} images"
    st.markdown("**Why:** in training mode each BatchNorm layer normalises with the mean and "
                f"variance of the current batch ({images}), and moves its stored statistics "
                "towards them, away from what the head learned on; the features shift under it.")
    if interactive:
        with st.expander("Validation loss"):
            st.plotly_chart(result["figures"]["loss"], key="lessons_batchnorm_loss")
