"""Defence in depth: the app starts and trains with its own source folder read-only.

A server that cannot write its own code cannot be made to run a visitor's code through it, however a
file write is obtained. The test copies the app, makes the copy read-only (a read-only bind mount in a
private mount namespace when run as root, whom file modes do not stop; `chmod a-w` otherwise), and
then, inside that, trains through the CLI (its `main`) and through the app (AppTest), with the cache
and runs in their own writable folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP_PARTS = ("lib", "pages", "streamlit_app.py", ".streamlit")
TIMEOUT_S = 540

# Runs inside the read-only copy: proves it is read-only, trains via the CLI, then via the app.
CHECK_SCRIPT = r"""
import contextlib, io, json, os, sys, time
from pathlib import Path

app, data = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, str(app))
try:
    (app / "pages" / "written_by_the_server.py").write_text("print('pwned')")
    writable = True
except OSError:
    writable = False
# The CLI's `main` in this process, which imports `lib` from the read-only copy as
# `python -m lib` would (a second interpreter would only add a TensorFlow import).
from lib.cli import main

cli_err = io.StringIO()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(cli_err):
    cli_rc = main(["train", "--backbone", "tiny_random", "--data", data, "--epochs", "1",
                   "--out", os.path.join(os.environ["TRANSFERLAB_RUNS"], "cli_run")])

from streamlit.testing.v1 import AppTest

at = AppTest.from_file(str(app / "streamlit_app.py"), default_timeout=60).run()
at.switch_page("pages/train.py").run()
at.number_input(key="train_epochs").set_value(1).run()
at.button(key="train_start").click().run()
status, end = None, time.time() + 240
while time.time() < end:
    job = at.session_state["train_job"] if "train_job" in at.session_state else None
    if job is not None and not job.running:
        status = job.snapshot()["status"]
        break
    time.sleep(0.5)
    at.run()
at.run()
print(json.dumps({"writable": writable, "cli_rc": cli_rc, "cli_err": cli_err.getvalue()[-2000:],
                  "app_status": status, "exceptions": [e.value for e in at.exception]}))
"""


def copy_app(dest: Path) -> Path:
    dest.mkdir()
    for part in APP_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / part)
    return dest


def read_only_command(app: Path, command: list[str]) -> list[str]:
    """`command`, run with `app` read-only."""
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("unshare (util-linux) is not installed, so root cannot get a read-only mount")
        mount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        return ["unshare", "--mount", "sh", "-c", mount, "sh", str(app), *command]
    for path in sorted(app.rglob("*"), reverse=True) + [app]:
        path.chmod(path.stat().st_mode & 0o555)
    return command


def test_app_starts_and_trains_with_its_source_read_only(tmp_path, tiny_backbone):
    app = copy_app(tmp_path / "app")
    data = make_image_folder(tmp_path / "data", {"red": 10, "green": 10}, size=36)
    cache = tmp_path / "cache"
    env = {**os.environ, "TRANSFERLAB_CACHE": str(cache), "TRANSFERLAB_RUNS": str(cache / "runs"),
           "TRANSFERLAB_DEFAULT_BACKBONE": "tiny_random", "TRANSFERLAB_DEFAULT_DATA": str(data),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(app)}
    command = read_only_command(app, [sys.executable, "-c", CHECK_SCRIPT, str(app), str(data)])
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=app, env=env)
    if proc.returncode != 0 and "unshare" in command[0] and "ermission" in proc.stderr + proc.stdout:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["writable"] is False, "the copy was not read-only; the test proves nothing"
    assert result["cli_rc"] == 0, result["cli_err"]
    assert result["app_status"] == "done", result
    assert result["exceptions"] == []
    assert (cache / "runs" / "cli_run" / "model.keras").is_file()
    assert not (app / "pages" / "written_by_the_server.py").exists()
