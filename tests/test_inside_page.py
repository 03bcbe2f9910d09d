"""The Look inside page through AppTest, on the tiny random backbone: each tab runs its job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGE = "pages/look_inside.py"
DEADLINE_S = 60


@pytest.fixture
def app(tmp_path, monkeypatch) -> AppTest:
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "tiny_data", {"red": 4, "green": 4}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait_for(at: AppTest, job_key: str) -> AppTest:
    """Reruns the page until the job under `job_key` has finished."""
    began = time.time()
    while True:
        job = at.session_state[job_key]
        if not job.running:
            return at.run()
        assert time.time() - began < DEADLINE_S, f"{job_key} did not finish"
        time.sleep(0.3)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_page_renders_three_tabs(app):
    assert app.title[0].value == "Look inside"
    assert [t.label for t in app.tabs] == ["Adversarial", "Ideal image", "Grad-CAM"]
    assert_clean(app)


def test_attack_and_sweep(app):
    app.button(key="inside_attack_run").click().run()
    at = wait_for(app, "inside_attack_job")
    assert_clean(at)
    assert any("PGD" in m.value and "succeed" in m.value for m in at.markdown)
    assert at.session_state["inside_attack_job"].snapshot()["result"].linf <= 4.0
    at.button(key="inside_sweep_run").click().run()
    at = wait_for(at, "inside_sweep_job")
    assert_clean(at)
    assert len(at.get("plotly_chart")) >= 3  # top-5 before/after, robust accuracy, minimal eps


def test_ideal_image_and_tv_comparison(app):
    app.slider(key="inside_ideal_steps").set_value(10).run()
    app.button(key="inside_ideal_run").click().run()
    at = wait_for(app, "inside_ideal_job")
    assert_clean(at)
    assert len(at.session_state["inside_gallery"]) == 1
    at.button(key="inside_compare_run").click().run()
    at = wait_for(at, "inside_compare_job")
    assert_clean(at)
    result = at.session_state["inside_compare_job"].snapshot()["result"]
    assert set(result) == {"plain", "tv0", "tv"}


def test_ideal_channel_of_a_layer(app):
    app.radio(key="inside_ideal_kind").set_value("A channel of a layer").run()
    app.selectbox(key="inside_ideal_layer").set_value("block2_out").run()
    app.number_input(key="inside_ideal_channel").set_value(3).run()
    app.slider(key="inside_ideal_steps").set_value(10).run()
    app.button(key="inside_ideal_run").click().run()
    at = wait_for(app, "inside_ideal_job")
    assert_clean(at)
    out = at.session_state["inside_ideal_job"].snapshot()["result"]
    assert out["label"] == "block2_out channel 3" and out["result"].class_index is None


def test_gradcam(app):
    app.button(key="inside_cam_run").click().run()
    at = wait_for(app, "inside_cam_job")
    assert_clean(at)
    result = at.session_state["inside_cam_job"].snapshot()["result"]
    assert result.heatmap.shape == (4, 4)
