"""Driving the dashboard in a real headless Chromium: a `streamlit run` server and Selenium helpers.

Shared by the browser tests (`tests/test_browser.py`) and the latency benchmark
(`bench/app_latency.py`); not a test module itself. The page list comes from the router's own
(`lib.ui.navigation`). Waits raise `TimeoutError` when a page never gets there (a hang guard, not a
performance check).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lib.lessons import list_lessons
from lib.ui import navigation

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SERVER_START_TIMEOUT = 60
RENDER_TIMEOUT = 90
# Pages whose h1 is not their navigation title (Lessons opens on its first lesson).
H1_OVERRIDES = {"Home": "TransferLab", "Lessons": list_lessons()[0].title}
# (nav label, the page's h1), in navigation order, from the router's own page list.
NAV_PAGES = [(page.title, H1_OVERRIDES.get(page.title, page.title))
             for page in navigation.all_pages()]
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--window-size=1400,1000")


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env_extra: dict[str, str], log_path: Path) -> Iterator[str]:
    """Runs `streamlit run streamlit_app.py` on a free port; yields its URL and stops it after."""
    port = free_port()
    env = dict(os.environ, **env_extra)
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    end = time.time() + SERVER_START_TIMEOUT
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer within {SERVER_START_TIMEOUT} s")


def make_driver(user_data_dir: str | Path):
    """A headless Chromium with no network chatter and a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def h1_text(driver) -> str:
    from selenium.webdriver.common.by import By

    heads = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] h1")
    try:
        return heads[0].text.strip() if heads else ""
    except Exception:  # noqa: BLE001 - the element was redrawn between find and read
        return ""


def script_idle(driver) -> bool:
    """True when Streamlit says the script is not running (fragments aside)."""
    state = driver.execute_script(
        "const a = document.querySelector('[data-testid=stApp]');"
        "return a ? a.getAttribute('data-test-script-state') : null;")
    return state == "notRunning"


def wait_for(predicate, timeout: float = RENDER_TIMEOUT, poll: float = 0.05) -> float:
    """Polls `predicate()` until true; returns the seconds waited."""
    start = time.time()
    while time.time() - start < timeout:
        try:
            if predicate():
                return time.time() - start
        except Exception:  # noqa: BLE001 - stale elements while Streamlit redraws
            pass
        time.sleep(poll)
    raise TimeoutError(f"condition not met within {timeout} s")


def wait_for_title(driver, title: str, timeout: float = RENDER_TIMEOUT) -> float:
    """Waits until the main h1 reads `title`."""
    return wait_for(lambda: h1_text(driver) == title, timeout)


def click_nav(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    for link in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebarNavLink]"):
        if link.text.splitlines()[-1].strip() == label:
            link.click()
            return
    raise LookupError(f"no sidebar link {label!r}")


def nav_labels(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.text.splitlines()[-1].strip()
            for a in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebarNavLink]")]


def page_problems(driver) -> list[str]:
    """Exception boxes and traceback text on the page."""
    from selenium.webdriver.common.by import By

    problems = [e.text[:300] for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")]
    body = driver.find_element(By.TAG_NAME, "body").text
    if "Traceback" in body:
        problems.append(body[body.index("Traceback"):][:300])
    return problems


def click_button(driver, text: str, timeout: float = RENDER_TIMEOUT) -> None:
    """Clicks the enabled main-area button labelled `text`, waiting for it to appear."""
    wait_for(lambda: _click_button(driver, text), timeout)


def _click_button(driver, text: str) -> bool:
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] button"):
        # Material icons render as ligature text ("play_arrow") on a line before the label.
        if button.text.strip().splitlines()[-1:] == [text] and button.is_enabled():
            button.click()
            return True
    return False


def set_number_input(driver, label: str, value: int, timeout: float = RENDER_TIMEOUT) -> None:
    """Types into the number input labelled `label` (waiting for it) and commits with Enter."""
    wait_for(lambda: _set_number_input(driver, label, value), timeout)


def _set_number_input(driver, label: str, value: int) -> bool:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for box in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stNumberInput]"):
        if box.text.splitlines()[0].strip() == label:
            field = box.find_element(By.TAG_NAME, "input")
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(str(value), Keys.ENTER)
            return True
    return False


def save_full_screenshot(driver, path: Path) -> None:
    """A screenshot of the whole page: the window grows to the app's height for the shot."""
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=stMain]');"
        "return Math.max(document.body.scrollHeight, m ? m.scrollHeight : 0);")
    width, old_height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    driver.set_window_size(width, min(max(old_height, int(height) + 200), 6000))
    time.sleep(0.5)  # let charts re-layout to the new size
    driver.save_screenshot(str(path))
    driver.set_window_size(width, old_height)


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def make_upload_image(folder: Path) -> Path:
    """A small JPEG to upload."""
    import numpy as np
    from PIL import Image

    path = folder / "upload.jpg"
    Image.fromarray(np.full((48, 64, 3), (30, 160, 40), np.uint8)).save(path)
    return path


def upload_zip(driver, path: Path) -> None:
    """On the Data page: "Upload a zip", send `path`, and click "Use this zip"."""
    open_page(driver, "Data")
    click_radio(driver, "Upload a zip")
    upload_file(driver, path)
    click_button(driver, "Use this zip")


def click_radio(driver, option: str, timeout: float = RENDER_TIMEOUT) -> None:
    """Clicks the main-area radio option labelled `option`, waiting for it to appear."""
    wait_for(lambda: _click_radio(driver, option), timeout)


def _click_radio(driver, option: str) -> bool:
    from selenium.webdriver.common.by import By

    for label in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] [data-testid=stRadio] label"):
        if label.text.strip() == option:
            label.click()
            return True
    return False


def upload_file(driver, path: Path, timeout: float = RENDER_TIMEOUT) -> None:
    """Sends `path` to the first file uploader in the main area (waiting for it)."""
    from selenium.webdriver.common.by import By

    selector = "[data-testid=stMain] [data-testid=stFileUploader] input[type=file]"
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, selector), timeout)
    driver.find_element(By.CSS_SELECTOR, selector).send_keys(str(path))


def open_page(driver, label: str) -> None:
    """Clicks a sidebar page and waits until its title is drawn and the script is idle."""
    title = dict(NAV_PAGES)[label]
    click_nav(driver, label)
    wait_for_title(driver, title)
    wait_for(lambda: script_idle(driver))
