"""An unusable cache or runs folder is a one-line message from any command, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_lib_in_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variable", ["TRANSFERLAB_CACHE", "TRANSFERLAB_RUNS"])
def test_unusable_folder_is_a_message(tmp_path, variable):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    env = {**os.environ, variable: str(blocker / "cache")}
    command = ["backbones"] if variable == "TRANSFERLAB_CACHE" else [
        "train", "--backbone", "tiny_random", "--data", "builtin:faces", "--epochs", "1"]
    if command == ["backbones"]:  # a fresh process: nothing done at import may touch the cache
        proc = subprocess.run([sys.executable, "-m", "lib", *command], capture_output=True,
                              text=True, timeout=300, cwd=ROOT, env=env)
    else:  # the command's own check, in this process (a fresh one would import TensorFlow)
        proc = run_lib_in_process(command, env)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and variable in last and "Traceback" not in proc.stderr
