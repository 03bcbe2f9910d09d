"""Server warm-up, second half: what a page's first visit paid for, done once at server start.

Measured per page on a fresh server after TensorFlow was in (web-process CPU seconds of the first
render, then of the second): Lessons 2.4-4.2 then 0.03, Train 1.7-3.3 then 0.04, Data 0.4-0.7 then
0.05, Adversarial examples 0.2-0.5 then 0.05, Model zoo 0.1-0.4 then 0.04. With every core busy
with jobs, each CPU second was several seconds of wall time for the visitor (issues 10, 14).
The first visits paid for modules imported on first use, Streamlit's emoji table, plotly's
validators, and the shared caches: the default backbone, the default dataset with its sample grid,
and the opening lesson's compiled steps.

`warm_caches()` starts one background thread per server process, after the engine thread
(`lib.ui.resources.warm_engine`): it preloads the page modules (`lib.warmup`) and, in a
`streamlit run` server only (not in AppTest runs nor the CLI), fills those shared, read-only caches
through the same cached functions the pages call. A page that asks for a value the thread is still
computing waits for that one computation (Streamlit's per-key lock) instead of repeating it. The
thread makes no `st.*` element calls, and a step that fails only logs a line: the page that needs
the value then computes it and shows its own error.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable

import streamlit as st

from lib.ui import resources, state

THREAD_NAME = "warm-caches"
# Streamlit modules the pages load on first use: the emoji table behind every label and icon is
# one regular expression of all emoji, compiled on first use (0.6-0.8 s of CPU).
STREAMLIT_MODULES = ("streamlit.emojis", "streamlit.dataframe_util", "lib.ui.lessons",
                     "lib.ui.gather", "lib.ui.choosers", "lib.ui.inside", "lib.ui.jobs")
LOGGER = logging.getLogger(__name__)


class Prefill:
    """The warm-up thread and what each of its steps took (seconds of wall time, for the log).

    Args:
        engine: the engine thread to wait for (`lib.ui.resources.warm_engine()`).
        fill_caches: also fill the shared caches (a real server). Defaults to True.
    """

    def __init__(self, engine: threading.Thread, fill_caches: bool = True) -> None:
        self.engine = engine
        self.fill_caches = fill_caches
        self.seconds: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.thread = threading.Thread(target=self.run, name=THREAD_NAME, daemon=True)

    def steps(self) -> list[tuple[str, Callable[[], object]]]:
        """`(name, step)` in order: modules first, then what the first pages visited ask for."""
        from lib.warmup import preload_page_modules, warm_images, warm_plotly

        steps = [("page modules", preload_page_modules),
                 ("streamlit modules", lambda: [importlib.import_module(m) for m in STREAMLIT_MODULES]),
                 ("plotly", warm_plotly), ("dataframes", warm_dataframes), ("images", warm_images)]
        if self.fill_caches:
            steps += [("default backbone", prefill_backbone), ("default data", prefill_data),
                      ("opening lesson", prefill_lesson)]
        return steps

    def run(self) -> None:
        self.engine.join()
        for name, step in self.steps():
            began = time.perf_counter()
            try:
                step()
            except Exception as e:  # noqa: BLE001 - a warm-up step must never take the server down
                self.failed[name] = f"{type(e).__name__}: {e}"
                LOGGER.warning("Warm-up step %r failed (%s); the page computes it on its first "
                               "visit.", name, self.failed[name])
            self.seconds[name] = round(time.perf_counter() - began, 2)
        LOGGER.info("Warm-up done: %s", self.seconds)

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the thread; True once it has finished."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


class _NoContextWarning(logging.Filter):
    """Drops Streamlit's "missing ScriptRunContext" warning for the warm-up thread, which calls
    cached functions outside any script run on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD_NAME


@st.cache_resource(show_spinner=False)
def warm_caches() -> Prefill:
    """Starts the warm-up thread once per server process; returns it (see the module docstring)."""
    from lib.warmup import is_streamlit_server

    for name in ("streamlit.runtime.scriptrunner_utils.script_run_context",
                 "streamlit.runtime.caching.cache_data_api",
                 "streamlit.runtime.caching.cache_resource_api"):
        logging.getLogger(name).addFilter(_NoContextWarning())
    prefill = Prefill(resources.warm_engine(), fill_caches=is_streamlit_server())
    prefill.thread.start()
    return prefill


def warm_dataframes() -> None:
    """Converts one small table the way `st.dataframe` does (pyarrow loads its pandas bridge on
    first use: the zoo table's first draw)."""
    import pandas as pd
    from streamlit import dataframe_util

    dataframe_util.convert_anything_to_arrow_bytes(pd.DataFrame({"name": ["a"], "value": [1.0]}))


def prefill_backbone() -> None:
    """The default backbone, and the Train page's parameter counts for its default settings."""
    from lib.training import TrainConfig

    backbone = resources.get_backbone(state.default_backbone())
    dataset = resources.get_dataset(state.default_data(), "")  # the scan every session shares
    head = TrainConfig().head
    resources.param_counts(backbone.spec.name, backbone.spec.cut_points[-1], head.hidden_units,
                           head.dropout, len(dataset.class_names))


def prefill_data() -> None:
    """The default dataset's sample grid (the Data page's first figure)."""
    resources.sample_grid_figure(state.default_data(), resources.SAMPLE_GRID_PER_CLASS, "")


def prefill_lesson() -> None:
    """The lesson the Lessons page opens on, run once: its backbone, probe and compiled steps are
    shared, so every visitor's run after this one skips the tracing (4-5 s of CPU)."""
    from lib.lessons import lesson_backbones, list_lessons
    from lib.ui.lessons.common import lesson_models

    lesson = list_lessons()[0]
    if lesson.replay:
        return  # a replayed lesson reads its kept result from disk
    params = dict(lesson.defaults)
    if "backbone" in params:
        params["backbone"] = lesson_backbones()[0]
    lesson.run(lesson_models(), **params)
