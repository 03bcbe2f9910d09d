"""The `ideal-image` lesson's live part: plain ascent and regularised ascent, side by side."""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson, lesson_backbones, page_params
from lib.lessons.ideal import ESPRESSO, KINDS
from lib.ui import resources
from lib.ui.lessons.common import RUN_PREFIX, cached_result, run_cached, set_url, url_value


def ideal_ui(lesson: Lesson, interactive: bool) -> None:
    """Both ideal images of the class, each run on a click (they take the longest)."""
    backbone, other = lesson_backbones()
    probe = resources.get_backbone_probe(backbone)
    class_index = ESPRESSO if probe.num_classes == 1000 else 0
    seed = url_value("seed", 0, int)
    if interactive:
        seed = int(st.number_input("Seed (a different random start)", 0, 99, value=seed,
                                   key="lessons_ideal_seed"))
        set_url(seed=seed)
    st.caption(f"Each image: {lesson.timing}.")
    columns = st.columns(2)
    titles = {"plain": "Plain gradient ascent", "regularised": "With total variation and jitter"}
    for column, kind in zip(columns, KINDS, strict=True):
        params = {**page_params(lesson, backbone), "other": other, "class_index": class_index,
                  "seed": seed, "which": kind}
        with column:
            st.markdown(f"**{titles[kind]}**")
            result = cached_result(lesson, **params)
            if result is None and interactive and st.button(
                    f"{RUN_PREFIX}: {titles[kind].lower()}", key=f"lessons_ideal_run_{kind}"):
                result = run_cached(lesson, with_progress=True, **params)
            if result is None:
                st.info("Not run yet." if interactive else "Run it on the previous step.")
                continue
            numbers = result["numbers"][kind]
            st.image(result["images"][kind], width="stretch")
            judge = ("" if numbers["other_backbone_prob"] is None else
                     f"; {other} (never saw it): **{numbers['other_backbone_prob']:.0%}**")
            st.markdown(f"{backbone}: **{numbers['prob']:.0%}** {result['numbers']['class']}"
                        f"{judge}. Total variation {numbers['total_variation']:.3f}.")
