"""The web process's budget: a TensorFlow thread budget and a short GIL switch interval, applied
in a `streamlit run` process only (tests and the CLI keep TensorFlow's own sizing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lib.warmup import SERVER_SWITCH_INTERVAL_S, is_streamlit_server, server_tf_threads

ROOT = Path(__file__).resolve().parents[1]

# A fresh process: the budget, TensorFlow's pools after an op, and a second (late) attempt.
CONFIGURE = textwrap.dedent("""
    import json, os
    from lib.warmup import configure_server_process
    print(json.dumps(configure_server_process()))
    import tensorflow as tf
    tf.constant(1.0) + 1.0
    os.environ["TRANSFERLAB_SERVER_TF_THREADS"] = "2"
    late = configure_server_process()["tf_threads"]
    print(json.dumps({"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                      "inter": tf.config.threading.get_inter_op_parallelism_threads(), "late": late}))
""")


def test_thread_budget_setting():
    assert server_tf_threads("", cores=2) == 1  # one core left to the pages
    assert server_tf_threads("", cores=1) == 1
    assert server_tf_threads("", cores=8) == 7
    assert server_tf_threads("0", cores=8) == 0  # TensorFlow's own sizing
    assert server_tf_threads("16", cores=8) == 8
    with pytest.raises(ValueError, match="TRANSFERLAB_SERVER_TF_THREADS=two"):
        server_tf_threads("two", cores=8)


def test_pytest_is_not_a_server():
    assert not is_streamlit_server()


def test_streamlit_cli_is_recognised(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "streamlit.web.bootstrap", types.ModuleType("bootstrap"))
    assert is_streamlit_server()  # `streamlit run` loads its bootstrap; AppTest does not


def test_the_budget_applies_before_tensorflow_starts():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "TRANSFERLAB_SERVER_TF_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CONFIGURE], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    applied, after = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert applied == {"tf_threads": 1, "switch_interval_s": pytest.approx(SERVER_SWITCH_INTERVAL_S)}
    # Once TensorFlow runs its pools are fixed: a later, different budget is not applied.
    assert (after["intra"], after["inter"]) == (1, 1) and after["late"] in (None, 1)


def test_the_local_cluster_starts_at_warmup_only_when_asked_for(monkeypatch):
    from lib.warmup import start_local_cluster

    monkeypatch.delenv("TRANSFERLAB_SCHEDULER", raising=False)
    assert start_local_cluster() is False
    # A remote scheduler is never contacted at warm-up (a scheduler that is down must not stall it).
    monkeypatch.setenv("TRANSFERLAB_SCHEDULER", "tcp://127.0.0.1:9")
    assert start_local_cluster() is False
