"""The `adversarial` lesson's live part: a photo, its adversarial twin, the change amplified."""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson, lesson_backbones
from lib.lessons.adversarial import EPS_CHOICES, TARGET
from lib.ui import resources
from lib.ui.lessons.common import photo_choice, run_cached, set_url, url_value


def adversarial_ui(lesson: Lesson, interactive: bool) -> None:
    """The attack at the URL's ε (a slider when interactive), before and after."""
    backbone, _ = lesson_backbones()
    probe = resources.get_backbone_probe(backbone)
    target = TARGET if probe.num_classes == 1000 else None
    photo = photo_choice(lesson, interactive)
    eps = url_value("eps", 2.0, float)
    eps = eps if eps in EPS_CHOICES else 2.0
    if interactive:
        eps = st.select_slider("ε: the most any pixel may change (0–255 scale)", EPS_CHOICES,
                               value=eps, key="lessons_adversarial_eps")
        set_url(eps=eps)
    result = run_cached(lesson, backbone=backbone, photo=photo, eps=float(eps), steps=10,
                        target=target)
    numbers, images = result["numbers"], result["images"]
    columns = st.columns(3)
    before, after = numbers["before"], numbers["after"]
    columns[0].image(images["original"], width="stretch",
                     caption=f"Original: {before['label']} ({before['prob']:.0%})")
    columns[1].image(images["adversarial"], width="stretch",
                     caption=f"Adversarial: {after['label']} ({after['prob']:.0%})")
    columns[2].image(images["perturbation"], width="stretch",
                     caption=f"The change, amplified {numbers['gain']:.0f}×")
    verdict = "changed its answer" if numbers["success"] else "kept its answer"
    st.markdown(f"The network **{verdict}**: largest pixel change {numbers['linf']:g} of 255 "
                f"(ε = {numbers['eps']:g}).")
    st.plotly_chart(result["figures"]["topk"], key=f"lessons_adversarial_topk_{interactive}")
