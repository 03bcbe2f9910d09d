"""Dashboard latency with a real browser against a real `streamlit run` server.

Measures, with headless Chromium driven by Selenium:

1. cold first render: a fresh server's first page (TensorFlow and the engine are imported then);
2. first visit of each page (its imports and cached loads) and warm page switches (median and max
   over `--rounds` passes through every page, clicking the sidebar as a person does);
3. time from clicking "Start training" to the first point of the live loss chart;
4. while that session trains (it moves on to Home): a second browser session's first render and
   its page switches.

The browsers run on the same machine as the server, so on a small machine their drawing competes
with the server and the training for the same cores; the numbers are an upper bound.

A page counts as answered when its title is drawn and Streamlit reports the script idle.
Targets: warm page switches < 1 s; other pages < 2 s while a job trains.
Writes bench/results/app_latency.json. Run: `python bench/app_latency.py` (about 3-5 minutes).

`--first-point` measures only (3), once per engine (`--engines tf,litert`: a server each with
`TRANSFERLAB_ENGINE` set), with the feature cache on and cold (a private cache that shares the
user's converted weights and LiteRT files, but not its features), so the time is extraction plus
the first epoch: wall seconds and the server's CPU seconds (`psutil`, the server process and its
threads), and the ratio. Writes bench/results/app_first_point.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402
from tests.browser_driver import (  # noqa: E402
    NAV_PAGES,
    browser_missing,
    click_button,
    click_nav,
    make_driver,
    nav_labels,
    page_problems,
    script_idle,
    set_number_input,
    streamlit_server,
    wait_for,
    wait_for_title,
)

SWITCH_TARGET_S = 1.0
WHILE_TRAINING_TARGET_S = 2.0
FIRST_POINT_TIMEOUT = 300
# The live chart has points when any Plotly graph in the main area holds a trace with y values.
CHART_HAS_POINTS_JS = """
return Array.from(document.querySelectorAll('[data-testid=stMain] .js-plotly-plot'))
  .some(g => (g.data || []).some(t => (t.y || []).length > 0));
"""


def answer_time(driver, label: str, title: str) -> float:
    """Clicks a sidebar page; seconds until its title is drawn and the script is idle."""
    start = time.perf_counter()
    click_nav(driver, label)
    wait_for_title(driver, title)
    wait_for(lambda: script_idle(driver), poll=0.02)
    return time.perf_counter() - start


def page_pass(driver, pages: list[tuple[str, str]]) -> dict[str, float]:
    """One pass through `pages`, returning label -> answer seconds."""
    times = {}
    for label, title in pages:
        times[label] = answer_time(driver, label, title)
        problems = page_problems(driver)
        if problems:
            raise RuntimeError(f"{label} shows an error: {problems}")
    return times


def summarize(passes: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    labels = passes[0].keys() if passes else []
    return {label: {"median": statistics.median(p[label] for p in passes),
                    "max": max(p[label] for p in passes)} for label in labels}


def toggle_off(driver, label: str) -> None:
    """Turns off the toggle whose label is `label` (if it is on)."""
    from selenium.webdriver.common.by import By

    def click() -> bool:
        for box in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stCheckbox]"):
            if box.text.strip().startswith(label):
                field = box.find_element(By.TAG_NAME, "input")
                if field.is_selected():
                    # A plain click on the label misses react-aria's press handling; the input's
                    # own click event is what a keyboard or pointer toggle ends in.
                    driver.execute_script("arguments[0].click()", field)
                return True
        return False

    wait_for(click)
    wait_for(lambda: script_idle(driver))


def first_chart_point(driver) -> float:
    """Clicks Start training; seconds until the live chart has its first point."""
    start = time.perf_counter()
    click_button(driver, "Start training")
    wait_for(lambda: driver.execute_script(CHART_HAS_POINTS_JS), timeout=FIRST_POINT_TIMEOUT, poll=0.1)
    return time.perf_counter() - start


def stop_if_running(driver) -> bool:
    """Clicks Stop when the job is still running; returns whether it was."""
    try:
        click_button(driver, "Stop", timeout=3)
    except TimeoutError:
        return False
    return True


def server_cpu_s() -> float:
    """CPU seconds so far of this process's `streamlit run` child (all its threads)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        if "streamlit" in " ".join(child.cmdline()):
            times = child.cpu_times()
            return times.user + times.system
    raise RuntimeError("no streamlit server among this process's children")


def private_cache(workdir: Path) -> Path:
    """A cache that shares the user's weights, datasets and LiteRT files, with no features."""
    from lib.storage import cache_dir

    cache = workdir / "cache"
    cache.mkdir(parents=True)
    for entry in cache_dir().iterdir():
        if entry.name not in ("features", "runs"):
            (cache / entry.name).symlink_to(entry)
    return cache


def first_point_per_engine(args: argparse.Namespace) -> dict:
    """Start -> first chart point once per engine, feature cache on and cold: wall and server CPU."""
    result: dict = {"backbone": args.backbone, "data": args.data, "machine": common.machine()}
    for engine in args.engines.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"transferlab-latency-{engine}-"))
        env = {"TRANSFERLAB_DEFAULT_BACKBONE": args.backbone, "TRANSFERLAB_DEFAULT_DATA": args.data,
               "TRANSFERLAB_RUNS": str(workdir / "runs"), "TRANSFERLAB_ENGINE": engine,
               "TRANSFERLAB_CACHE": str(private_cache(workdir))}
        with streamlit_server(env, workdir / "server.log") as url:
            driver = make_driver(workdir / "chrome")
            try:
                driver.get(url)
                wait_for_title(driver, "TransferLab")
                wait_for(lambda d=driver: script_idle(d), poll=0.02)
                answer_time(driver, "Train", "Train")
                set_number_input(driver, "Epochs", args.epochs)
                wait_for(lambda d=driver: script_idle(d))
                load, cpu = common.load_average(), server_cpu_s()
                wall = first_chart_point(driver)
                result[engine] = {"wall_s": round(wall, 2), "server_cpu_s": round(server_cpu_s() - cpu, 2),
                                  "load_average": load}
                stop_if_running(driver)
            finally:
                driver.quit()
        print(f"{engine}: {result[engine]}", file=sys.stderr, flush=True)
    if {"tf", "litert"} <= set(result):
        result["ratio_wall"] = round(result["tf"]["wall_s"] / result["litert"]["wall_s"], 2)
        result["ratio_server_cpu"] = round(result["tf"]["server_cpu_s"] / result["litert"]["server_cpu_s"], 2)
    return result


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="transferlab-latency-"))
    env = {"TRANSFERLAB_DEFAULT_BACKBONE": args.backbone, "TRANSFERLAB_DEFAULT_DATA": args.data,
           "TRANSFERLAB_RUNS": str(workdir / "runs")}
    result: dict = {"backbone": args.backbone, "data": args.data, "epochs": args.epochs,
                    "rounds": args.rounds, "machine": common.machine(),
                    "load_average_at_start": common.load_average()}
    with streamlit_server(env, workdir / "server.log") as url:
        a = make_driver(workdir / "chrome-a")
        b = None
        try:
            start = time.perf_counter()
            a.get(url)
            wait_for_title(a, "TransferLab")
            wait_for(lambda: script_idle(a), poll=0.02)
            result["cold_first_render_s"] = time.perf_counter() - start
            labels = nav_labels(a)
            pages = [(label, title) for label, title in NAV_PAGES if label in labels]
            result["pages"] = [label for label, _ in pages]
            # Every page once: its imports and first cached loads (the shared backbone, the data).
            result["first_visit_s"] = page_pass(a, pages[1:] + pages[:1])
            result["warm_switch_s"] = summarize([page_pass(a, pages) for _ in range(args.rounds)])

            answer_time(a, "Train", "Train")
            set_number_input(a, "Epochs", args.epochs)
            wait_for(lambda: script_idle(a))
            # No early stopping: the job must outlast the measurements taken while it trains.
            set_number_input(a, "Early stopping patience (0 = off)", 0)
            wait_for(lambda: script_idle(a))
            if args.no_feature_cache:
                toggle_off(a, "Use the feature cache")  # so each epoch runs the backbone: a long job
            result["start_to_first_point_s"] = first_chart_point(a)
            # The training session goes on to Home while it waits, as a person would: its own
            # browser redrawing the live chart is client work, and here the browsers share the
            # server's two cores, so leaving it on Train would bill that drawing to the server.
            result["training_session_to_home_s"] = answer_time(a, "Home", "TransferLab")

            b = make_driver(workdir / "chrome-b")
            start = time.perf_counter()
            b.get(url)
            wait_for_title(b, "TransferLab")
            wait_for(lambda: script_idle(b), poll=0.02)
            result["while_training_first_render_s"] = time.perf_counter() - start
            others = [p for p in pages if p[0] != "Train"]
            passes = [page_pass(b, others) for _ in range(args.rounds)]
            result["while_training_switch_s"] = summarize(passes)
            answer_time(a, "Train", "Train")  # back to the job, to stop it
            result["job_still_running_at_end"] = stop_if_running(a)
        finally:
            a.quit()
            if b is not None:
                b.quit()
    return result


def print_table(result: dict) -> None:
    print(f"TransferLab app latency: backbone {result['backbone']}, data {result['data']}, "
          f"{result['machine']['device']}, load average {result['load_average_at_start']:.1f} at start")
    print(f"{'measure':<52} {'median s':>9} {'max s':>8} {'target':>8}")
    def row(label, median, worst=None, target=None):
        ok = "" if target is None else ("ok" if (worst if worst is not None else median) < target
                                        else "MISSED")
        print(f"{label:<52} {median:>9.2f} {'' if worst is None else f'{worst:.2f}':>8} "
              f"{'' if target is None else f'<{target:g} {ok}':>8}")
    row("cold first render (fresh server, Home)", result["cold_first_render_s"])
    for label, seconds in result["first_visit_s"].items():
        row(f"first visit: {label}", seconds)
    for label, s in result["warm_switch_s"].items():
        row(f"warm switch: {label}", s["median"], s["max"], SWITCH_TARGET_S)
    row("click Start -> first live chart point", result["start_to_first_point_s"])
    row("while training: its own session to Home", result["training_session_to_home_s"],
        target=WHILE_TRAINING_TARGET_S)
    row("while training: 2nd session first render", result["while_training_first_render_s"])
    for label, s in result["while_training_switch_s"].items():
        row(f"while training: {label}", s["median"], s["max"], WHILE_TRAINING_TARGET_S)
    warm = max(s["max"] for s in result["warm_switch_s"].values())
    busy = max(s["max"] for s in result["while_training_switch_s"].values())
    print(f"worst warm switch {warm:.2f} s (target < {SWITCH_TARGET_S:g} s); worst page while "
          f"training {busy:.2f} s (target < {WHILE_TRAINING_TARGET_S:g} s); job still running "
          f"at the end: {result['job_still_running_at_end']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--data", default="builtin:faces")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--feature-cache", dest="no_feature_cache", action="store_false",
                        help="keep the feature cache on (a much shorter job)")
    parser.add_argument("--first-point", action="store_true",
                        help="only Start -> first chart point, once per engine (cold feature cache)")
    parser.add_argument("--engines", default="tf,litert", help="with --first-point (default tf,litert)")
    args = parser.parse_args()
    reason = browser_missing()
    if reason:
        print(f"skipped: {reason}")
        return 0
    common.prepare()
    if args.first_point:
        result = first_point_per_engine(args)
        print(json.dumps(result, indent=2))
        path = common.write_results("app_first_point", result, indent=2)
        print(f"wrote {path.relative_to(ROOT)}")
        return 0
    result = run(args)
    print_table(result)
    path = common.write_results("app_latency", result, indent=2)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
