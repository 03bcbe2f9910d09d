"""On a hosted server a session sees its own runs and the shared ones, in Runs and in every chooser."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from lib.runs import runs_dir

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")


def write_run(name: str, owner: str, shared: bool = False) -> Path:
    run = runs_dir() / name
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"backbone": "tiny_random", "data": "x",
                                                 "owner": owner, "shared": shared}))
    return run


def listed(at: AppTest) -> set[str]:
    return set(at.dataframe[0].value["name"]) if at.dataframe else set()


def test_hosted_runs_page_lists_own_and_shared_runs_only(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOSTED", "1")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    private = write_run("zz-someone-elses-private-run", owner="session-other")
    shared = write_run("zz-someone-elses-shared-run", owner="session-other", shared=True)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    names = listed(at)
    assert shared.name in names and private.name not in names
    assert "runs others shared" in "\n".join(c.value for c in at.caption)


def test_team_server_lists_every_run(monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_HOSTED", raising=False)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    private = write_run("zz-team-private-run", owner="session-other")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    assert private.name in listed(at)
