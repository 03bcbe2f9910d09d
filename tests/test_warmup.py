"""The server warm-up (`lib.warmup`, `lib.ui.prefill`): a page's first visit finds its modules
imported and the shared caches it reads filled, so it costs what a later visit costs.

No test measures time: one checks which modules a first render imports (in a fresh process, after
the warm-up), one counts the heavy computations a page repeats after the warm-up filled the caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui import navigation
from lib.ui.prefill import Prefill
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 120

# A fresh process: the router's first run starts the warm-up; once it is done, every page's first
# render must import no module (the warm-up already did). TensorFlow's autograph writes a module
# per traced function; those are not imports of the pages.
FIRST_RENDERS = textwrap.dedent("""
    import json, sys, threading
    from streamlit.testing.v1 import AppTest
    from lib.ui import navigation

    at = AppTest.from_file(sys.argv[1], default_timeout=300).run()
    for name in ("warm-engine", "warm-caches"):
        for thread in threading.enumerate():
            if thread.name == name:
                thread.join()
    new = {}
    for page in navigation.all_pages():
        before = set(sys.modules)
        at.switch_page(page.path).run()
        assert not at.exception, (page.path, [e.value for e in at.exception])
        new[page.path] = sorted(m for m in set(sys.modules) - before
                                if not m.startswith("__autograph_generated"))
    print(json.dumps(new))
""")


@pytest.fixture
def tiny_server_defaults(tmp_path, monkeypatch) -> Path:
    """The app's defaults on the tiny backbone and a fresh 2-class folder (fresh cache keys)."""
    folder = make_image_folder(tmp_path / "warm_data", {"red": 12, "green": 12}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    return folder


def test_first_renders_after_the_warmup_import_nothing(tiny_server_defaults):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", FIRST_RENDERS, APP], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = json.loads(proc.stdout.splitlines()[-1])
    assert set(new) == {page.path for page in navigation.all_pages()}
    assert {page: mods for page, mods in new.items() if mods} == {}


def test_the_warmup_fills_the_caches_the_pages_read(tiny_server_defaults, monkeypatch):
    done = threading.Thread(target=lambda: None)
    done.start()
    prefill = Prefill(done, fill_caches=True)
    prefill.run()  # on this thread: the same steps a server runs in the background
    assert prefill.failed == {}
    assert set(prefill.seconds) == {name for name, _ in prefill.steps()}

    computed = []

    def forbid(name):
        def call(*args, **kwargs):
            computed.append(name)
            raise AssertionError(f"{name} ran again after the warm-up")
        return call

    import lib.backbones
    import lib.data.sources
    import lib.evaluate
    import lib.plots.data

    monkeypatch.setattr(lib.backbones, "load_backbone", forbid("load_backbone"))
    monkeypatch.setattr(lib.data.sources, "load_dataset", forbid("load_dataset"))
    monkeypatch.setattr(lib.evaluate, "count_classifier_params", forbid("count_classifier_params"))
    monkeypatch.setattr(lib.plots.data, "make_sample_grid_figure", forbid("make_sample_grid_figure"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    for page in (navigation.DATA, navigation.TRAIN):
        at.switch_page(page.path).run()
        assert not at.exception, [e.value for e in at.exception]
    assert computed == []


def test_the_render_log_times_each_run_of_the_app(tiny_server_defaults, tmp_path, monkeypatch):
    log = tmp_path / "renders.jsonl"
    monkeypatch.setenv("TRANSFERLAB_RENDER_LOG", str(log))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["page"] for row in rows] == [navigation.HOME.title]
    assert rows[0]["session"].startswith("session-") and 0 <= rows[0]["cpu_s"]
    monkeypatch.delenv("TRANSFERLAB_RENDER_LOG")
    at.run()
    assert len(log.read_text().splitlines()) == 1  # unset: nothing is written


def _stopped_script() -> None:
    import streamlit as st

    from lib.ui import timing

    with timing.timed_run() as run:
        run["page"] = "stopped"
        st.stop()  # Fine-tune and Runs end this way when there is nothing to show yet


def test_the_render_log_keeps_runs_that_stop(tmp_path, monkeypatch):
    log = tmp_path / "renders.jsonl"
    monkeypatch.setenv("TRANSFERLAB_RENDER_LOG", str(log))
    at = AppTest.from_function(_stopped_script, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [json.loads(line)["page"] for line in log.read_text().splitlines()] == ["stopped"]
