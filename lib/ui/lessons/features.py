"""The `features` lesson's live part: ImageNet top-5 and feature maps at three depths."""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson, lesson_backbones
from lib.ui.lessons.common import PHOTO_NAMES, photo_choice, run_cached


def features_ui(lesson: Lesson, interactive: bool) -> None:
    """A photo's top-5 and its feature maps (the photo from the URL, a picker when interactive)."""
    backbone, _ = lesson_backbones()
    photo = photo_choice(lesson, interactive)
    result = run_cached(lesson, backbone=backbone, photo=photo, channels=8)
    numbers, images = result["numbers"], result["images"]
    left, right = st.columns([1, 2])
    left.image(images["photo"], caption=PHOTO_NAMES[photo], width="stretch")
    right.plotly_chart(result["figures"]["top5"], key=f"lessons_features_top5_{interactive}")
    columns = st.columns(3)
    for column, cut in zip(columns, numbers["cuts"], strict=True):
        column.markdown(f"**{cut['role'].capitalize()}** · `{cut['layer']}`")
        column.image(images[f"maps_{cut['role']}"], width="stretch")
        column.caption(f"{cut['height']}×{cut['width']} pixels, {cut['channels']} channels "
                       "(the 8 most active shown)")
