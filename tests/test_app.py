"""The dashboard through Streamlit's AppTest: every page renders, and a tiny training runs end to end.

The server-side defaults (`TRANSFERLAB_DEFAULT_BACKBONE`, `TRANSFERLAB_DEFAULT_DATA`) point at the
hidden 32-px `tiny_random` backbone and a tiny generated folder, so nothing slow is loaded. The page
list comes from the router's own (`lib.ui.navigation`), so a page added there is tested here, and a
page file that is missing fails. Waiting for a job has no deadline of its own: pytest's timeout
ends a test that hangs, and no test asserts how long anything took.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui import navigation
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = [page.path for page in navigation.all_pages()]
TIMEOUT = 60
POLL_SECONDS = 0.5


@pytest.fixture
def tiny_defaults(tmp_path, monkeypatch) -> Path:
    """Points the app's defaults at tiny_random and a 2-class folder of 16 images per class."""
    folder = make_image_folder(tmp_path / "tiny_data", {"red": 16, "green": 16}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    return folder


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


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


def test_every_router_page_exists():
    assert navigation.missing_pages() == []
    assert len(PAGES) == len(set(PAGES))
    assert {"pages/inside_adversarial.py", "pages/inside_ideal.py", "pages/inside_gradcam.py"} <= set(PAGES)


def test_a_missing_page_fails(tmp_path):
    assert navigation.missing_pages(tmp_path) == PAGES


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(tiny_defaults, page):
    assert (ROOT / page).is_file(), f"{page} is in the navigation but not on disk"
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


def wait_for_job(at: AppTest, key: str) -> dict:
    """Reruns the app (as the fragment's timer would) until the job `key` finishes."""
    while True:
        job = at.session_state[key] if key in at.session_state else None
        if job is not None and not job.running:
            at.run()
            return job.snapshot()
        time.sleep(POLL_SECONDS)
        at.run()
        assert not at.exception, [e.value for e in at.exception]


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
    while not job.snapshot()["events"].get("batch") and job.running:
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


def test_train_page_defaults_come_from_train_config(tiny_defaults):
    from lib.training import TrainConfig

    defaults = TrainConfig()
    at = new_app().run()
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert at.number_input(key="train_epochs").value == defaults.epochs
    assert at.number_input(key="train_patience").value == defaults.early_stopping_patience
    assert at.select_slider(key="train_lr").value == defaults.learning_rate
    assert at.select_slider(key="train_batch").value == defaults.batch_size
    at.switch_page("pages/data.py").run()
    assert at.slider(key="data_val").value == pytest.approx(defaults.val_split)
    assert at.slider(key="data_test").value == pytest.approx(defaults.test_split)


# ----- a saved run, opened in Predict and Look inside ---------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny run on disk (trained through lib, as the CLI would), with its model saved; trained
    once for the tests below, which only open it."""
    from lib.training import TrainConfig, train

    folder = make_image_folder(tmp_path_factory.mktemp("saved_run") / "tiny_data",
                               {"red": 16, "green": 16}, size=36)
    config = TrainConfig(backbone="tiny_random", data=str(folder), epochs=1, batch_size=8,
                         test_split=0.0)
    result = train(config)
    assert (Path(result.run_dir) / "model.keras").is_file() or result.model is not None
    return Path(result.run_dir)


@pytest.fixture
def saved_run(trained_run, tiny_defaults) -> Path:
    """`trained_run`, with the app's defaults pointed at tiny_random as in the other tests."""
    return trained_run


def choose_saved_run(at: AppTest, prefix: str, run_dir: Path) -> AppTest:
    """Picks "A saved run" in a page's model chooser, then the run `run_dir`."""
    from lib.ui.choosers import SAVED_RUN

    at.radio(key=f"{prefix}_model").set_value(SAVED_RUN).run()
    at.selectbox(key=f"{prefix}_run").set_value(str(run_dir)).run()
    return at


def test_predict_opens_a_saved_run(saved_run, tmp_path):
    from PIL import Image

    from lib.predict import predict_files
    from lib.ui.choosers import MODEL_OPTIONS, SAVED_RUN, ModelChoice, load_classifier_for

    at = new_app().run()
    at.switch_page("pages/predict.py").run()
    assert_clean(at)
    options = list(at.radio(key="predict_model").options)
    assert SAVED_RUN in options
    assert options == [o for o in MODEL_OPTIONS if o in options]  # one order on every page
    choose_saved_run(at, "predict", saved_run)
    assert_clean(at)
    assert at.session_state["predict_model_run"] == str(saved_run)
    # AppTest cannot upload a file (the browser test does): predict through the loader the page
    # calls for this choice, which must be the run's own classifier.
    loaded = load_classifier_for(ModelChoice(SAVED_RUN, str(saved_run), "tiny_random"))
    assert loaded.source == "run" and loaded.name == str(saved_run)
    assert list(loaded.class_names) == ["green", "red"]
    image = tmp_path / "green.png"
    Image.new("RGB", (36, 36), (20, 200, 20)).save(image)
    [top] = predict_files(loaded.model, loaded.class_names, [image], k=2)
    assert {t["label"] for t in top} == {"green", "red"}


@pytest.mark.parametrize("page", ["pages/inside_adversarial.py", "pages/inside_ideal.py",
                                  "pages/inside_gradcam.py"])
def test_look_inside_opens_a_saved_run(saved_run, page):
    at = new_app().run()
    at.switch_page(page).run()
    assert_clean(at)
    choose_saved_run(at, "inside", saved_run)
    assert_clean(at)
    assert any(f"run {saved_run.name} (2 classes)" in c.value for c in at.caption), texts(at)


# ----- issue 13 §5: the Train page's top losses, and an upload named by its file name ----------


def test_top_losses_show_thumbnails_and_survive_a_missing_image(tiny_defaults, tmp_path):
    """Every top loss is drawn from pixels lib made (a thumbnail); a file gone from the cache since
    training (pruned, or a run reopened elsewhere) leaves its caption, not a broken page."""
    from PIL import Image

    from lib.training import TrainConfig, train

    result = train(TrainConfig(backbone="tiny_random", data=str(tiny_defaults), epochs=1,
                               batch_size=8))
    top = result.metrics["evaluation"]["top_losses"]
    assert len(top) >= 3
    big = tmp_path / "big.png"  # e.g. a converted phone photo at full size
    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(big)
    top[0]["path"] = str(big)
    top[1]["path"] = str(tmp_path / "pruned_since.jpg")
    at = new_app().run()
    at.session_state["train_result"] = result
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    images = list(at.main.get("image"))
    assert len(images) == len(top) - 1
    assert all(img.url for e in images for img in e.proto.imgs)
    assert "pruned_since.jpg" in texts(at)


def test_load_thumbnail_is_small_upright_rgb_or_none(tmp_path):
    from PIL import Image

    from lib.evaluate import THUMBNAIL_SIDE, load_thumbnail

    big = tmp_path / "big.png"
    Image.new("RGBA", (3000, 1000), (10, 20, 30, 128)).save(big)
    thumb = load_thumbnail(str(big))
    assert thumb.dtype.name == "uint8" and thumb.shape[2] == 3
    assert max(thumb.shape[:2]) <= THUMBNAIL_SIDE
    assert load_thumbnail(str(tmp_path / "missing.jpg")) is None
    (tmp_path / "not_an_image.jpg").write_text("hello")
    assert load_thumbnail(str(tmp_path / "not_an_image.jpg")) is None


def zip_of(folder: Path) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*.jpg")):
            archive.write(path, f"flowers3/{path.relative_to(folder)}")
    return buffer.getvalue()


def test_an_upload_is_named_by_its_file_name_not_its_cache_path(tiny_defaults, monkeypatch):
    from lib.training import TrainConfig, train
    from lib.ui.choosers import run_label
    from lib.uploads import display_name, save_upload

    spec = save_upload("flowers3.zip", zip_of(tiny_defaults))
    assert "uploads" in spec and display_name(spec) == "flowers3.zip"
    assert display_name(str(tiny_defaults)) == str(tiny_defaults)  # a server folder stays a path
    assert display_name("builtin:faces") == "builtin:faces"
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", spec)
    at = new_app().run()
    assert_clean(at)
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "flowers3.zip" in sidebar and "uploads" not in sidebar
    home_links = [e.proto.label for e in at.main.get("page_link")]
    assert "Data: flowers3.zip" in home_links

    run = train(TrainConfig(backbone="tiny_random", data=spec, epochs=1, batch_size=8))
    at.switch_page("pages/runs.py").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table[table["name"] == Path(run.run_dir).name]["data"]) == ["flowers3.zip"]
    assert not any("uploads" in str(d) for d in table["data"])
    row = {"name": Path(run.run_dir).name, "backbone": "tiny_random", "data": spec}
    assert "flowers3.zip" in run_label(row) and "uploads" not in run_label(row)
