"""The live parts of the lessons that train networks on a few digits (`transfer-vs-scratch`,
`when-transfer-fails`): the result `lessons prepare` kept, or a button that trains them now."""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson
from lib.ui.lessons.common import trained_result


def transfer_ui(lesson: Lesson, interactive: bool) -> None:
    """Learning curves at 10 images per class, and accuracy against images per class."""
    result = trained_result(lesson, interactive)
    if result is None:
        return
    numbers, figures = result["numbers"], result["figures"]
    left, right = st.columns(2)
    left.plotly_chart(figures["curves"], key=f"lessons_transfer_curves_{interactive}")
    right.plotly_chart(figures["accuracy_vs_images"], key=f"lessons_transfer_counts_{interactive}")
    at = numbers["images_per_class"].index(numbers["curves"]["images_per_class"])
    st.markdown(
        f"With **{numbers['images_per_class'][at]} images per class**: pretrained and frozen "
        f"**{numbers['transfer'][at]:.0%}**, from random weights **{numbers['scratch'][at]:.0%}** "
        f"(chance {numbers['chance']:.0%}; {numbers['test_images']} test images, "
        f"{numbers['size']}×{numbers['size']} pixels, {numbers['epochs']} epochs each).")


def when_fails_ui(lesson: Lesson, interactive: bool) -> None:
    """Accuracy at three cut points, frozen, and with the whole body fine-tuned."""
    result = trained_result(lesson, interactive)
    if result is None:
        return
    numbers = result["numbers"]
    st.plotly_chart(result["figures"]["cuts"], key=f"lessons_when_fails_cuts_{interactive}")
    rows = ", ".join(f"`{cut}` {acc:.0%}" for cut, acc in
                     zip(numbers["cuts"], numbers["frozen"], strict=True))
    st.markdown(
        f"Frozen body, a head on each cut: {rows}. The whole body fine-tuned from the top cut: "
        f"**{numbers['fine_tuned']:.0%}** ({numbers['images_per_class']} training images per "
        f"class, {numbers['test_images']} test images, chance {numbers['chance']:.0%}).")
