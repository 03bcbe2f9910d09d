"""Every page on a fresh server tells a newcomer what to do (issue 13 §6).

A fresh server: an empty runs folder, no dataset chosen in the session and no trained model. Each
page must render (no exception, a title) and show an empty-state message (`st.info`, or the Data
page's `st.success` once it picks the built-in set) together with a next step: a link to the page
that comes first, or an action to take on this page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui import navigation

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = [page.path for page in navigation.all_pages()]
ACTIONS = ("press", "upload", "choose", "pick", "click", "select", "train")


@pytest.fixture
def fresh_server(tmp_path, monkeypatch):
    """An empty runs folder and the tiny backbone; the session chooses no data."""
    runs = tmp_path / "empty_runs"
    runs.mkdir()
    monkeypatch.setenv("TRANSFERLAB_RUNS", str(runs))
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    return runs


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_an_empty_state_with_a_next_step(fresh_server, page):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["data_spec"] = None
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, f"{page} has no title"
    shown = [str(e.value) for e in [*at.info, *at.success]]
    assert shown, f"{page} shows no empty-state message on a fresh server"
    links = list(at.main.get("page_link"))
    acts = any(word in text.lower() for text in shown for word in ACTIONS)
    assert links or acts, f"{page} says nothing about what to do next: {shown}"
    assert len(list(at.main)) > 2, f"{page} is blank below its title"
