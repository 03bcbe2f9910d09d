"""Imports TensorFlow and the backbone registry on a background thread, with the web process's budget.

Importing TensorFlow takes seconds; the Home page does not need it, so a cold server can show Home
at once and be ready by the time the visitor opens another page. The UI starts this once per server
process (`lib.ui.resources.warm_engine`); the thread makes no Streamlit calls.

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

import os
import sys
import threading

THREAD_NAME = "warm-engine"
TF_THREADS_ENV = "TRANSFERLAB_SERVER_TF_THREADS"
# Python's default is 0.005 s; pages wait for the GIL at most this long after each blocking call.
SERVER_SWITCH_INTERVAL_S = 0.001


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


def start_warmup() -> threading.Thread:
    """Starts `import_engine` on a daemon thread and returns the thread (`is_alive()` = not ready)."""
    thread = threading.Thread(target=import_engine, name=THREAD_NAME, daemon=True)
    thread.start()
    return thread
