"""The three Look inside pages through AppTest, on the tiny random backbone: each runs its job.

Waiting for a job has no deadline of its own: pytest's timeout ends a test that hangs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui import navigation

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
ATTACK, IDEAL, GRADCAM = navigation.INSIDE_ATTACK, navigation.INSIDE_IDEAL, navigation.INSIDE_GRADCAM
POLL_S = 0.3


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    """Returns `open_page(page) -> AppTest` on a fresh session with tiny defaults."""
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "tiny_data", {"red": 4, "green": 4}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))

    def open_(page: navigation.PageInfo) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page.path).run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return open_


def wait_for(at: AppTest, job_key: str) -> AppTest:
    """Reruns the page until the job under `job_key` has finished."""
    while at.session_state[job_key].running:
        time.sleep(POLL_S)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_look_inside_is_three_pages_in_one_section(open_page):
    assert list(navigation.SECTIONS["Look inside"]) == [ATTACK, IDEAL, GRADCAM]
    for page in (ATTACK, IDEAL, GRADCAM):
        at = open_page(page)
        assert at.title[0].value == page.title
        assert any("Looking inside tiny_random" in c.value for c in at.caption)
        assert_clean(at)


def test_model_choice_is_shared_by_the_look_inside_pages(open_page):
    at = open_page(ATTACK)
    assert at.radio(key="inside_model").value == at.radio(key="inside_model").options[-1]
    at.switch_page(GRADCAM.path).run()
    assert at.session_state["inside_model_choice"] == at.radio(key="inside_model").value


def test_attack_and_sweep(open_page):
    app = open_page(ATTACK)
    app.button(key="inside_attack_run").click().run()
    at = wait_for(app, "inside_attack_job")
    assert_clean(at)
    assert any("PGD" in m.value and "succeed" in m.value for m in at.markdown)
    assert at.session_state["inside_attack_job"].snapshot()["result"].linf <= 4.0
    at.button(key="inside_sweep_run").click().run()
    at = wait_for(at, "inside_sweep_job")
    assert_clean(at)
    assert len(at.get("plotly_chart")) >= 3  # top-5 before/after, robust accuracy, minimal eps


def test_ideal_image_and_tv_comparison(open_page):
    app = open_page(IDEAL)
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


def test_ideal_channel_of_a_layer(open_page):
    app = open_page(IDEAL)
    app.radio(key="inside_ideal_kind").set_value("A channel of a layer").run()
    app.selectbox(key="inside_ideal_layer").set_value("block2_out").run()
    app.number_input(key="inside_ideal_channel").set_value(3).run()
    app.slider(key="inside_ideal_steps").set_value(10).run()
    app.button(key="inside_ideal_run").click().run()
    at = wait_for(app, "inside_ideal_job")
    assert_clean(at)
    out = at.session_state["inside_ideal_job"].snapshot()["result"]
    assert out["label"] == "block2_out channel 3" and out["result"].class_index is None


def test_gradcam(open_page):
    app = open_page(GRADCAM)
    app.button(key="inside_cam_run").click().run()
    at = wait_for(app, "inside_cam_job")
    assert_clean(at)
    result = at.session_state["inside_cam_job"].snapshot()["result"]
    assert result.heatmap.shape == (4, 4)


# ----- issue 13 §2 on the page: true labels, L2, margin, final probability, what success means -----


@pytest.fixture
def saved_run_page(tmp_path, monkeypatch):
    """`(open_page, run_dir, dataset folder)`: a tiny run trained on the session's default data."""
    from lib.training import TrainConfig, train
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "labelled", {"red": 8, "green": 8}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    result = train(TrainConfig(backbone="tiny_random", data=str(folder), epochs=1, batch_size=8,
                               test_split=0.0))

    def open_(page: navigation.PageInfo) -> AppTest:
        from lib.ui.choosers import SAVED_RUN

        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page.path).run()
        at.radio(key="inside_model").set_value(SAVED_RUN).run()
        at.selectbox(key="inside_run").set_value(str(result.run_dir)).run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return open_, folder


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.subheader] + [e.value for e in at.info]
    return "\n".join(str(p) for p in parts)


def test_sweep_measures_robust_accuracy_against_the_datasets_true_labels(saved_run_page):
    from lib.data.sources import load_dataset
    from lib.inside.attacks import sample_dataset

    open_, folder = saved_run_page
    at = open_(ATTACK)
    at.button(key="inside_sweep_run").click().run()
    at = wait_for(at, "inside_sweep_job")
    assert_clean(at)
    sweep = at.session_state["inside_sweep_job"].snapshot()["result"]
    index = load_dataset(str(folder))
    _, expected = sample_dataset(index, 12, 32, ("green", "red"))
    assert sweep.reference == expected  # the true labels, not the clean predictions
    assert sweep.eps[0] == 0  # the clean accuracy is the curve's first point
    assert "true labels" in texts(at)


def test_sweep_without_labels_says_it_uses_clean_predictions(open_page):
    at = open_page(ATTACK)  # the backbone's ImageNet classes: the red/green folder has no labels there
    at.button(key="inside_sweep_run").click().run()
    at = wait_for(at, "inside_sweep_job")
    assert_clean(at)
    assert "clean prediction" in texts(at)


def test_sweep_in_l2(open_page):
    at = open_page(ATTACK)
    at.radio(key="inside_norm").set_value("l2").run()
    at.button(key="inside_sweep_run").click().run()
    at = wait_for(at, "inside_sweep_job")
    assert_clean(at)
    sweep = at.session_state["inside_sweep_job"].snapshot()["result"]
    assert max(sweep.eps) > 100  # an L2 grid, in pixel units of the whole change
    assert "L2" in at.button(key="inside_sweep_run").label
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "(L2)" in curve["layout"]["title"]["text"]


def test_attack_uses_the_margin_and_reports_the_final_probability(open_page):
    at = open_page(ATTACK)
    assert "Success" in texts(at)  # the page says what success means before anything runs
    at.slider(key="inside_margin").set_value(0.5).run()
    at.button(key="inside_attack_run").click().run()
    at = wait_for(at, "inside_attack_job")
    assert_clean(at)
    result = at.session_state["inside_attack_job"].snapshot()["result"]
    assert result.margin == 0.5
    shown = texts(at)
    assert "Final probability" in shown
    assert f"{result.target_prob_after:.1%}" in shown
