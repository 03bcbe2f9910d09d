"""The dashboard through Streamlit's AppTest: every page renders, and a tiny training runs end to end.

The server-side defaults (`TRANSFERLAB_DEFAULT_BACKBONE`, `TRANSFERLAB_DEFAULT_DATA`) point at the
hidden 32-px `tiny_random` backbone and a tiny generated folder, so nothing slow is loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = ["pages/home.py", "pages/zoo.py", "pages/data.py", "pages/train.py", "pages/fine_tune.py",
         "pages/predict.py", "pages/look_inside.py", "pages/runs.py"]
TIMEOUT = 60
POLL_SECONDS = 0.5
TRAIN_DEADLINE = 120


@pytest.fixture
def tiny_defaults(tmp_path, monkeypatch) -> Path:
    """Points the app's defaults at tiny_random and a 2-class folder of 16 images per class."""
    folder = make_image_folder(tmp_path / "tiny_data", {"red": 16, "green": 16}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    return folder


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def existing_pages() -> list[str]:
    return [p for p in PAGES if (ROOT / p).is_file()]


def texts(at: AppTest) -> str:
    """All markdown, captions, info and error text of the current run, joined."""
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.error] + [e.value for e in at.success]
    parts += [e.value for e in at.warning]
    return "\n".join(str(p) for p in parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert "Traceback" not in texts(at)


def test_router_renders_home_with_sidebar(tiny_defaults):
    at = new_app().run()
    assert_clean(at)
    assert at.title[0].value == "TransferLab"
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "tiny_random" in sidebar
    assert "Data:" in sidebar


@pytest.mark.parametrize("page", existing_pages())
def test_every_page_renders(tiny_defaults, page):
    at = new_app().run()
    at.switch_page(page).run()
    assert_clean(at)
    assert at.title, f"{page} has no title"


def page_links(at: AppTest) -> list[str]:
    """Target pages of the page-link buttons in the main area."""
    return [e.proto.page for e in at.main.get("page_link")]


def test_train_page_without_data_links_to_data(tiny_defaults):
    at = new_app().run()
    at.session_state["data_spec"] = None
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert "Choose a dataset first" in texts(at)
    assert any("data" in link for link in page_links(at))


def test_fine_tune_without_a_trained_head_links_to_train(tiny_defaults):
    at = new_app().run()
    at.switch_page("pages/fine_tune.py").run()
    assert_clean(at)
    assert "Train one first" in texts(at)
    assert any("train" in link for link in page_links(at))


def test_bad_folder_shows_error_not_traceback(tiny_defaults):
    at = new_app().run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source_kind").set_value("Folder on the server").run()
    at.text_input(key="data_folder").input("/no/such/folder").run()
    at.button(key="data_use_folder").click().run()
    assert_clean(at)
    assert any("/no/such/folder" in e.value for e in at.error)
    assert at.session_state["data_spec"] == str(tiny_defaults)


def wait_for_job(at: AppTest, key: str, deadline: float = TRAIN_DEADLINE) -> dict:
    """Reruns the app (as the fragment's timer would) until the job `key` finishes."""
    end = time.time() + deadline
    while time.time() < end:
        job = at.session_state[key] if key in at.session_state else None
        if job is not None and not job.running:
            at.run()
            return job.snapshot()
        time.sleep(POLL_SECONDS)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    raise AssertionError(f"{key} did not finish within {deadline} s")


def chart_points(at: AppTest, chart_index: int = 0) -> int:
    """Number of data points in the `chart_index`-th Plotly chart on the page."""
    import json

    spec = json.loads(at.get("plotly_chart")[chart_index].proto.spec)
    return sum(len(trace.get("y") or []) for trace in spec["data"])


def test_train_then_fine_tune_end_to_end(tiny_defaults):
    at = new_app().run()
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    at.number_input(key="train_epochs").set_value(2).run()
    at.button(key="train_start").click().run()
    assert_clean(at)
    snap = wait_for_job(at, "train_job")
    assert snap["status"] == "done", snap["error"]
    assert_clean(at)
    assert snap["events"]["epoch"], "no epoch rows recorded"
    assert any(m.label.lower().startswith("validation accuracy") for m in at.metric)
    assert chart_points(at) > 0
    assert at.session_state["train_result"] is not None

    at.button(key="train_scratch").click().run()
    snap = wait_for_job(at, "scratch_job")
    assert snap["status"] == "done", snap["error"]
    assert_clean(at)
    assert "from scratch" in texts(at)

    at.switch_page("pages/fine_tune.py").run()
    assert_clean(at)
    at.number_input(key="finetune_epochs").set_value(1).run()
    at.button(key="finetune_start").click().run()
    snap = wait_for_job(at, "finetune_job")
    assert snap["status"] == "done", snap["error"]
    assert_clean(at)
    history = at.session_state["finetune_result"].history
    assert set(history["phase"]) >= {"frozen", "fine_tune"}
    assert chart_points(at) > 0

    at.switch_page("pages/runs.py").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert {"transfer", "scratch"} <= set(table["kind"])


def test_stop_ends_a_running_job(tiny_defaults):
    at = new_app().run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_epochs").set_value(200).run()
    at.number_input(key="train_patience").set_value(0).run()  # no early stopping
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    end = time.time() + TRAIN_DEADLINE
    while not job.snapshot()["events"].get("batch") and job.running and time.time() < end:
        time.sleep(0.2)
    at.run()
    at.button(key="train_job_stop").click().run()
    snap = wait_for_job(at, "train_job")
    assert snap["status"] == "stopped"
    assert len(snap["events"]["epoch"]) < 200
    assert any("Stopped" in w.value for w in at.warning)


def test_workflow_figure_marks_done_and_next_steps():
    from lib.plots.workflow import DONE_COLOR, NEXT_COLOR, WORKFLOW_STEPS, make_workflow_figure

    fig = make_workflow_figure({"data", "backbone"})
    boxes = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(boxes) == len(WORKFLOW_STEPS)
    colors = [b.line.color for b in boxes]
    assert colors[0] == colors[1] == DONE_COLOR  # data, backbone
    assert colors[2] == NEXT_COLOR  # the head is next
    texts_drawn = " ".join(a.text for a in fig.layout.annotations)
    assert all(title in texts_drawn for _, title, _ in WORKFLOW_STEPS)


def test_topk_figure_puts_the_most_likely_class_on_top():
    from lib.plots.ui import make_topk_figure

    top = [{"index": 3, "label": "cat", "prob": 0.7}, {"index": 1, "label": "dog", "prob": 0.2}]
    fig = make_topk_figure(top)
    bars = fig.data[0]
    assert list(bars.y) == ["dog", "cat"]  # plotly draws the last bar at the top
    assert abs(bars.x[-1] - 70.0) < 1e-9
