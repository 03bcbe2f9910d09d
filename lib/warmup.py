"""Imports TensorFlow and the backbone registry on a background thread, with the web process's budget.

Importing TensorFlow takes seconds; the Home page does not need it, so a cold server can show Home
at once and be ready by the time the visitor opens another page. The UI starts this once per server
process (`lib.ui.resources.warm_engine`); the thread makes no Streamlit calls.

`preload_page_modules`, `warm_plotly` and `warm_images` are the second half, run by
`lib.ui.prefill` once the engine is in: what a page's first visit otherwise paid on the render
path while every core was busy with jobs (issues 10, 14: first visits took 3.6-4.9 s against
0.6 s for later ones). They import the modules the pages import lazily (plotly, pandas and
pyarrow, scikit-image's photos, the lib packages behind each page), load Pillow's plugins, and
draw one figure of each kind, so plotly loads its validators.

Before TensorFlow starts, the web process gets two settings that keep pages answering while
background jobs train in it (the embedded job backend; issue 14's observer waited up to 8.6 s):

* **A TensorFlow thread budget.** TensorFlow sizes its op thread pools to every core, so training
  jobs kept all of them busy and the thread that renders pages queued behind them. The web process
  gives TensorFlow `TRANSFERLAB_SERVER_TF_THREADS` threads per pool (default: the cores less one,
  at least one) and leaves a core to the pages; `0` keeps TensorFlow's own sizing. Dask workers and
  the CLI are separate processes and keep every core.
* **A shorter GIL switch interval** (`SERVER_SWITCH_INTERVAL_S`). A page render makes many short
  blocking calls (socket writes, file reads), and after each it waits for the GIL; a job thread
  busy in Python (Keras' step loop, tracing) keeps it for up to the switch interval, 5 ms by
  default, each time.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import threading

THREAD_NAME = "warm-engine"
TF_THREADS_ENV = "TRANSFERLAB_SERVER_TF_THREADS"
# Python's default is 0.005 s; pages wait for the GIL at most this long after each blocking call.
SERVER_SWITCH_INTERVAL_S = 0.001
# Modules the pages import on first use (measured per page on a fresh server: every one of these
# was imported by some page's first render). Packages in `PAGE_PACKAGES` come with every submodule.
PAGE_MODULES = ("pandas", "pyarrow", "PIL.Image", "plotly.graph_objects", "plotly.subplots",
                "plotly.io", "skimage.data", "skimage.io", "lib.training", "lib.evaluate",
                "lib.predict", "lib.images", "lib.uploads", "lib.runs", "lib.zoo", "lib.jobs.tasks",
                "lib.export")
PAGE_PACKAGES = ("lib.plots", "lib.inside", "lib.lessons", "lib.data", "lib.training", "lib.jobs")


def server_tf_threads(raw: str | None = None, cores: int | None = None) -> int:
    """Threads per TensorFlow op pool in the web process (0: TensorFlow's own sizing).

    Args:
        raw: the setting. Defaults to None: `TRANSFERLAB_SERVER_TF_THREADS`, unset = the default.
        cores: usable cores. Defaults to None: this process's affinity mask.

    Returns:
        The setting, or `cores - 1` (at least 1) when unset; never more than `cores`.

    Raises:
        ValueError: a setting that is not a whole number >= 0 (echoed).
    """
    from lib.engine.threads import available_cores

    cores = available_cores() if cores is None else cores
    raw = (os.environ.get(TF_THREADS_ENV, "") if raw is None else raw).strip()
    if not raw:
        return max(1, cores - 1)
    if not raw.isdigit():
        raise ValueError(f"Received `{TF_THREADS_ENV}={raw}`; use a whole number of threads (0: all cores).")
    return min(int(raw), cores)


def configure_server_process() -> dict:
    """Applies the web process's budget (see the module docstring); call before TensorFlow runs an op.

    Returns:
        `{"tf_threads", "switch_interval_s"}` as applied; `tf_threads` is None when TensorFlow had
        already started (its pools are then fixed) or the setting is 0.
    """
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_S)
    try:
        threads = server_tf_threads()
    except ValueError:
        threads = server_tf_threads("")  # a bad setting must not stop the server; the default holds
    applied = None
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            applied = threads
        except RuntimeError:  # TensorFlow already initialised in this process: leave it as it is
            applied = None
    return {"tf_threads": applied, "switch_interval_s": sys.getswitchinterval()}


def is_streamlit_server() -> bool:
    """True in a `streamlit run` process (not in tests driving the app with AppTest, nor the CLI)."""
    # `streamlit run` starts through its bootstrap module; AppTest runs scripts without it. (Not
    # `__main__`: while a script runs, Streamlit puts the script's own module there.)
    return "streamlit.web.bootstrap" in sys.modules


def import_engine() -> None:
    """Budgets a web server process, then imports TensorFlow, Keras and every registry entry (what
    every page but Home needs)."""
    if is_streamlit_server():
        configure_server_process()
    from lib.backbones import catalog  # noqa: F401

    if is_streamlit_server():
        start_local_cluster()


def start_local_cluster() -> bool:
    """With `TRANSFERLAB_SCHEDULER=local`, starts the server's `LocalCluster` now, off the request
    path: started on the first submission instead, spawning the worker processes stalled every page
    for seconds while a class pressed Start together.

    Returns:
        True when a local cluster is running; False otherwise (other settings, or it failed to start:
        the first submission then says why).
    """
    from lib.errors import TransferLabError
    from lib.jobs import get_backend
    from lib.jobs.backend import LOCAL
    from lib.jobs.choose import scheduler_setting

    if scheduler_setting() != LOCAL:
        return False
    try:
        get_backend().client()
    except TransferLabError:
        return False
    return True


def page_module_names() -> list[str]:
    """`PAGE_MODULES`, then every module of `PAGE_PACKAGES` (packages first, no `__main__`)."""
    names = list(PAGE_MODULES)
    for package in PAGE_PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(path)
                  if info.name != "__main__"]
    return list(dict.fromkeys(names))


def preload_page_modules(names: list[str] | None = None) -> list[str]:
    """Imports what the pages import on first use, so no first visit pays for it.

    Args:
        names: module names. Defaults to None: `page_module_names()`.

    Returns:
        The names that could not be imported (an optional extra that is not installed); the pages
        that need them say so themselves.
    """
    missing = []
    for name in page_module_names() if names is None else names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def warm_plotly() -> None:
    """Draws and serialises one small figure of each kind the pages draw.

    Plotly loads a trace's or a layout property's validators on first use; a page's first figure
    paid for that (the Data page's sample grid took 1.2 s the first time, 0.05 s after).
    """
    import numpy as np
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("a", "b"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines+markers", name="line"), row=1, col=1)
    fig.add_trace(go.Bar(x=["a", "b"], y=[1, 2], text=["1", "2"], name="bars",
                         marker={"color": "#2563eb"}), row=1, col=2)
    fig.add_trace(go.Heatmap(z=[[0, 1], [1, 0]], colorscale="Blues"), row=1, col=1)
    fig.add_trace(go.Image(z=np.zeros((2, 2, 3), dtype=np.uint8)), row=1, col=2)
    fig.add_vline(x=0.5, line={"dash": "dot"}, annotation_text="here")
    fig.add_shape(type="rect", x0=0, y0=0, x1=1, y1=1)
    fig.update_layout(title="warm", height=200, margin={"l": 0}, legend={"orientation": "h"},
                      xaxis={"title": "x", "dtick": 1}, yaxis={"title": "y", "range": [0, 1]})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    pio.to_json(fig, validate=False)


def warm_images() -> None:
    """Loads Pillow's file-format plugins (its first `open` of a file does, scanning a dataset)
    and reads one built-in photo (scikit-image loads its fetchers and reader on first use)."""
    from PIL import Image
    from skimage import data

    Image.init()
    data.chelsea()


def start_warmup() -> threading.Thread:
    """Starts `import_engine` on a daemon thread and returns the thread (`is_alive()` = not ready)."""
    thread = threading.Thread(target=import_engine, name=THREAD_NAME, daemon=True)
    thread.start()
    return thread
