"""The app's pages, by navigation section: the one list the router and the tests read.

`streamlit_app.py` builds `st.navigation` from `SECTIONS`; the tests take their page list from
here too, so a page added to the router is tested, and a page file that is missing fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

APP_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PageInfo:
    """One page: its file (relative to the app root), its title in the navigation, and its icon."""

    path: str
    title: str
    icon: str


HOME = PageInfo("pages/home.py", "Home", ":material/school:")
ZOO = PageInfo("pages/zoo.py", "Model zoo", ":material/table_chart:")
DATA = PageInfo("pages/data.py", "Data", ":material/photo_library:")
TRAIN = PageInfo("pages/train.py", "Train", ":material/model_training:")
FINE_TUNE = PageInfo("pages/fine_tune.py", "Fine-tune", ":material/tune:")
PREDICT = PageInfo("pages/predict.py", "Predict", ":material/image_search:")
RUNS = PageInfo("pages/runs.py", "Runs", ":material/history:")
INSIDE_ATTACK = PageInfo("pages/inside_adversarial.py", "Adversarial examples", ":material/bolt:")
INSIDE_IDEAL = PageInfo("pages/inside_ideal.py", "Ideal image", ":material/auto_awesome:")
INSIDE_GRADCAM = PageInfo("pages/inside_gradcam.py", "Grad-CAM", ":material/visibility:")
LESSONS = PageInfo("pages/lessons.py", "Lessons", ":material/cast_for_education:")

# Section -> pages, in navigation order; the first page is the default.
SECTIONS: dict[str, tuple[PageInfo, ...]] = {
    "Learn": (HOME,),
    "Build a model": (ZOO, DATA, TRAIN, FINE_TUNE, PREDICT, RUNS),
    "Look inside": (INSIDE_ATTACK, INSIDE_IDEAL, INSIDE_GRADCAM),
    "Lessons": (LESSONS,),
}


def all_pages() -> list[PageInfo]:
    """Every page, in navigation order."""
    return [page for pages in SECTIONS.values() for page in pages]


def missing_pages(root: Path = APP_ROOT) -> list[str]:
    """Page files the navigation names that are not on disk (none in a complete install)."""
    return [page.path for page in all_pages() if not (root / page.path).is_file()]


def build_navigation() -> dict[str, list]:
    """`st.Page`s by section, for `st.navigation` (paths relative to the router's folder).

    Raises:
        FileNotFoundError: a page file is missing (a broken install should fail loudly, not hide a
            page).
    """
    missing = missing_pages()
    if missing:
        raise FileNotFoundError(f"Page files missing: {', '.join(missing)}")
    default = all_pages()[0]
    return {section: [st.Page(p.path, title=p.title, icon=p.icon,
                              default=p is default) for p in pages]
            for section, pages in SECTIONS.items()}


def page_link(page: PageInfo, label: str | None = None, icon: str | None = None) -> None:
    """A button to another page, labelled `label` (its title by default)."""
    st.page_link(page.path, label=label or page.title, icon=icon or page.icon)
