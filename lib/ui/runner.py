"""What Streamlit's script runner does between runs that a server training in threads cannot afford.

After every script run, fragment ticks included, Streamlit calls `keras.backend.clear_session()`
(`streamlit.runtime.scriptrunner.script_runner._clean_problem_modules`). In Keras 3 that replaces
the global state of every thread, resets TensorFlow's default graph, clears the eager kernel cache
and runs a full `gc.collect()`. With TensorFlow loaded that collection holds the GIL for a good part
of a second, and each session's job panel ticks every 1.5 s: in a profile of a server with three
sessions training, 67% of the server's samples were in `clear_session`, and a head epoch took 1.9-6 s
against 0.01-0.05 s in the CLI (issue 14). Clearing also pulls the kernel cache and Keras' global
state from under the jobs' threads, which build and train models at that moment.

TransferLab keeps its models in `st.cache_resource` and builds per-job models in the job threads, so
there is nothing per-run to clear. `keep_keras_state()` swaps that step for one that only closes
matplotlib figures (the other half of what Streamlit cleans). The swap is idempotent and does nothing
when a Streamlit release no longer has the step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_MARK = "_transferlab_keeps_keras_state"


def close_matplotlib_figures() -> None:
    """The half of Streamlit's between-runs cleanup that TransferLab keeps: open pyplot figures."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


setattr(close_matplotlib_figures, _MARK, True)


def keep_keras_state() -> bool:
    """Stops Streamlit from clearing the Keras session after every script run (see the module).

    Returns:
        True when the step is (now or already) replaced; False when this Streamlit has no such step.
    """
    from streamlit.runtime.scriptrunner import script_runner

    current: Callable | None = getattr(script_runner, "_clean_problem_modules", None)
    if current is None:
        return False
    if not getattr(current, _MARK, False):
        script_runner._clean_problem_modules = close_matplotlib_figures
    return True
