"""The dashboard in a real headless Chromium, against a real `streamlit run` server.

One server for the module (its defaults point at `tiny_random` and a tiny folder so this stays
fast); every test opens its own browser session and sets up what it needs, so the tests pass in
any order and alone. The driver helpers live in `tests/browser_driver.py`, which
`bench/app_latency.py` uses too.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_driver import (
    NAV_PAGES,
    body_text,
    browser_missing,
    click_button,
    click_nav,
    click_radio,
    make_driver,
    make_upload_image,
    nav_labels,
    open_page,
    page_problems,
    save_full_screenshot,
    script_idle,
    set_number_input,
    streamlit_server,
    upload_file,
    upload_zip,
    wait_for,
    wait_for_title,
)

pytestmark = pytest.mark.browser
TRAIN_TIMEOUT = 180
PREDICT_TIMEOUT = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """A running server: `(url, scratch folder, screenshots folder)`."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from tests.conftest import make_image_folder
    from tests.test_lessons import TINY_OVERRIDES

    base = tmp_path_factory.mktemp("browser")
    data = make_image_folder(base / "data", {"red": 16, "green": 16}, size=36)
    env = {"TRANSFERLAB_CACHE": os.environ["TRANSFERLAB_CACHE"],
           "TRANSFERLAB_RUNS": os.environ["TRANSFERLAB_RUNS"],
           "TRANSFERLAB_DEFAULT_BACKBONE": "tiny_random", "TRANSFERLAB_DEFAULT_DATA": str(data),
           # the lessons' live steps at their tiny sizes (seconds, not a minute, per click)
           "TRANSFERLAB_LESSON_PARAMS": json.dumps(TINY_OVERRIDES)}
    shots = Path(os.environ.get("TRANSFERLAB_SCREENSHOTS") or base / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with streamlit_server(env, base / "server.log") as url:
        yield url, base, shots


@pytest.fixture
def browser(server):
    """A fresh browser session on Home: `(driver, scratch folder, screenshots folder)`."""
    url, base, shots = server
    driver = make_driver(tempfile.mkdtemp(prefix="chromium-", dir=base))
    try:
        driver.get(url)
        wait_for_title(driver, "TransferLab")
        yield driver, base, shots
    finally:
        driver.quit()


def train_through_clicks(driver, epochs: int = 2) -> None:
    """Trains this session's model on the Train page, as a person would."""
    open_page(driver, "Train")
    set_number_input(driver, "Epochs", epochs)
    wait_for(lambda: script_idle(driver))
    click_button(driver, "Start training")
    wait_for(lambda: "Validation accuracy" in body_text(driver), timeout=TRAIN_TIMEOUT, poll=0.5)
    wait_for(lambda: script_idle(driver))


def test_every_page_renders_in_the_browser(browser):
    driver, _, shots = browser
    labels = nav_labels(driver)
    assert [label for label, _ in NAV_PAGES] == labels  # the router's pages, all of them
    for label, title in NAV_PAGES:
        click_nav(driver, label)
        wait_for_title(driver, title)
        wait_for(lambda: script_idle(driver))
        driver.save_screenshot(str(shots / f"{label.lower().replace(' ', '_')}.png"))
        assert not page_problems(driver), (label, page_problems(driver))


def test_train_through_clicks(browser):
    driver, _, shots = browser
    train_through_clicks(driver)
    save_full_screenshot(driver, shots / "train_done.png")
    assert not page_problems(driver), page_problems(driver)


def test_predict_an_upload_with_the_trained_model(browser):
    driver, base, shots = browser
    train_through_clicks(driver)
    open_page(driver, "Predict")
    upload_file(driver, make_upload_image(base))
    wait_for(lambda: "Predictions from your model" in body_text(driver), timeout=PREDICT_TIMEOUT,
             poll=0.3)
    wait_for(lambda: script_idle(driver))
    save_full_screenshot(driver, shots / "predict_done.png")
    assert not page_problems(driver), page_problems(driver)


@pytest.fixture
def saved_run(server) -> Path:
    """A run trained through lib (as the CLI does) into the server's runs folder: the newest run."""
    from lib.training import TrainConfig, train

    data = Path(os.environ["TRANSFERLAB_RUNS"]).parent / "browser_saved_run_data"
    if not data.is_dir():
        from tests.conftest import make_image_folder

        make_image_folder(data, {"cat": 8, "dog": 8}, size=36)
    result = train(TrainConfig(backbone="tiny_random", data=str(data), epochs=1, batch_size=8,
                               test_split=0.0))
    return Path(result.run_dir)


def test_saved_run_in_predict_and_look_inside(browser, saved_run):
    from lib.ui.choosers import SAVED_RUN

    driver, base, shots = browser
    open_page(driver, "Predict")
    click_radio(driver, SAVED_RUN)
    wait_for(lambda: "Saved run" in body_text(driver))  # the newest run is chosen first
    wait_for(lambda: script_idle(driver))
    upload_file(driver, make_upload_image(base))
    wait_for(lambda: f"Predictions from run {saved_run.name} (2 classes)" in body_text(driver),
             timeout=PREDICT_TIMEOUT, poll=0.3)
    wait_for(lambda: script_idle(driver))
    assert not page_problems(driver), page_problems(driver)

    open_page(driver, "Grad-CAM")
    click_radio(driver, SAVED_RUN)
    wait_for(lambda: f"Looking inside run {saved_run.name} (2 classes)" in body_text(driver),
             timeout=PREDICT_TIMEOUT, poll=0.3)
    wait_for(lambda: script_idle(driver))
    click_button(driver, "Explain")
    wait_for(lambda: "Grad-CAM for" in body_text(driver), timeout=PREDICT_TIMEOUT, poll=0.3)
    wait_for(lambda: script_idle(driver))
    save_full_screenshot(driver, shots / "gradcam_saved_run.png")
    assert not page_problems(driver), page_problems(driver)


def test_zip_upload_bad_then_good(browser, tmp_path):
    import zipfile

    from tests.conftest import make_image_folder

    driver, _, shots = browser
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file")
    upload_zip(driver, bad)
    wait_for(lambda: "not a zip file" in body_text(driver), timeout=60, poll=0.3)
    assert not page_problems(driver), page_problems(driver)
    driver.save_screenshot(str(shots / "data_bad_zip.png"))

    folder = make_image_folder(tmp_path / "pets", {"cat": 5, "dog": 5}, size=36)
    good = tmp_path / "pets.zip"
    with zipfile.ZipFile(good, "w") as archive:
        for file in folder.rglob("*.jpg"):
            archive.write(file, file.relative_to(folder.parent))
    driver.refresh()  # a new session with an empty uploader
    wait_for_title(driver, "Data")
    upload_zip(driver, good)
    wait_for(lambda: "10 images in 2 classes" in body_text(driver), timeout=60, poll=0.3)
    assert "pets.zip" in body_text(driver)
    assert not page_problems(driver), page_problems(driver)



def add_class_in_browser(driver, name: str) -> None:
    """Types a class name on the Data page's "Gather classes" and clicks "Add class"."""
    from selenium.webdriver.common.by import By

    def type_name() -> bool:
        for box in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stTextInput]"):
            if box.text.splitlines()[0].strip() == "New class name":
                box.find_element(By.TAG_NAME, "input").send_keys(name)
                return True
        return False

    wait_for(type_name)
    click_button(driver, "Add class")
    wait_for(lambda: f"{name} · 0 photos" in body_text(driver))
    wait_for(lambda: script_idle(driver))


def test_gather_classes_in_the_browser(browser, tmp_path):
    """Two classes filled by dropping files (a real upload; the webcam needs a device), saved, and
    the set is the session's data."""
    from selenium.webdriver.common.by import By

    from tests.conftest import make_image_folder

    driver, _, shots = browser
    open_page(driver, "Data")
    click_radio(driver, "Gather classes")
    folder = make_image_folder(tmp_path / "photos", {"left": 3, "right": 3}, size=48)
    selector = "[data-testid=stMain] [data-testid=stFileUploader] input[type=file]"
    for name in ("left", "right"):
        add_class_in_browser(driver, name)
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, selector))
        files = "\n".join(str(p) for p in sorted((folder / name).glob("*.jpg")))
        driver.find_element(By.CSS_SELECTOR, selector).send_keys(files)
        wait_for(lambda name=name: f"{name} · 3 photos" in body_text(driver), timeout=60, poll=0.3)
        wait_for(lambda: script_idle(driver))
    click_button(driver, "Save and use these classes")
    wait_for(lambda: "6 images in 2 classes" in body_text(driver), timeout=60, poll=0.3)
    wait_for(lambda: script_idle(driver))
    assert "Download our-classes.zip" in body_text(driver)
    save_full_screenshot(driver, shots / "data_gathered.png")
    assert not page_problems(driver), page_problems(driver)


# ----- lessons: every lesson, plain and presenter mode, its main step run (issue 9) ---------------

LESSON_RUN_TIMEOUT = 90
# At most this many "Run…" buttons clicked per lesson screen (a hang guard, not a count expected).
MAX_RUN_CLICKS = 4


def lesson_names() -> list[str]:
    """Every lesson the registry lists, so the lessons added later are covered when merged."""
    from lib.lessons import list_lessons

    return [lesson.name for lesson in list_lessons()]


def main_buttons(driver) -> list[tuple[str, object]]:
    """The enabled main-area buttons as `(label, element)`; the label is the text's last line
    (Material icons render as ligature text on a line before it)."""
    from selenium.webdriver.common.by import By

    found = []
    for button in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] button"):
        try:
            lines = button.text.strip().splitlines()
            if lines and button.is_enabled():
                found.append((lines[-1].strip(), button))
        except Exception:  # noqa: BLE001 - redrawn between find and read
            continue
    return found


def settle(driver, timeout: float = LESSON_RUN_TIMEOUT) -> None:
    """Waits until a rerun a click started has ended (it may take a moment to start)."""
    time.sleep(0.3)
    wait_for(lambda: script_idle(driver), timeout, poll=0.2)


def run_main_step(driver) -> list[str]:
    """Clicks every button whose label starts with "Run" (`RUN_PREFIX`: each lesson's live step)
    once, each after the last one's rerun.

    Returns:
        The labels clicked (none when the step has no such button).
    """
    from lib.ui.lessons.common import RUN_PREFIX

    clicked: list[str] = []
    while len(clicked) < MAX_RUN_CLICKS:
        todo = [(label, b) for label, b in main_buttons(driver)
                if label.startswith(RUN_PREFIX) and label not in clicked]
        if not todo:
            break
        label, button = todo[0]
        button.click()
        clicked.append(label)
        settle(driver)
        assert not page_problems(driver), (label, page_problems(driver))
    return clicked


def new_log_text(log: Path, start: int) -> str:
    with open(log, "rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def lesson_driver(server):
    """One Chromium for every lesson test (each `driver.get` is a new Streamlit session)."""
    _, base, _ = server
    driver = make_driver(tempfile.mkdtemp(prefix="chromium-", dir=base))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("name", lesson_names())
def test_lesson_and_presenter_mode_run_their_main_step(server, lesson_driver, name):
    """`?lesson=NAME`, then `?lesson=NAME&present=1` (Next to "Try it"): no exception on the page or
    in the server log, and every "Run…" button of the live step clicked (a training lesson trains
    only on such a click: "Run: train the networks", or "Run it live" over a prepared result)."""
    from lib.lessons import get_lesson

    url, base, shots = server
    driver = lesson_driver
    log = base / "server.log"
    log_start = log.stat().st_size
    title = get_lesson(name).title
    driver.get(f"{url}/lessons?lesson={name}")
    wait_for_title(driver, title)
    settle(driver)
    assert not page_problems(driver), page_problems(driver)
    trains = get_lesson(name).replay
    assert run_main_step(driver) or not trains
    save_full_screenshot(driver, shots / f"lesson_{name}.png")

    driver.get(f"{url}/lessons?lesson={name}&present=1")  # a new session: nothing cached
    wait_for_title(driver, title)
    settle(driver)
    assert "Step 1 of 4" in body_text(driver)
    click_button(driver, "Next →")
    wait_for(lambda: "Step 2 of 4" in body_text(driver), LESSON_RUN_TIMEOUT, poll=0.2)
    settle(driver)
    assert not page_problems(driver), page_problems(driver)
    assert run_main_step(driver) or not trains
    assert "step=1" in driver.current_url  # the step is in the URL
    driver.save_screenshot(str(shots / f"lesson_{name}_present.png"))
    logged = new_log_text(log, log_start)
    assert "Traceback" not in logged and "Uncaught exception" not in logged, logged[-3000:]
