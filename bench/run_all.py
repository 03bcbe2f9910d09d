"""Runs every benchmark in bench/ (each as its own process) and prints one summary table.

Each script prints its own table and writes bench/results/NAME.json; this collects those files.
A script that declares `DATASETS_NEEDED` (folders of ../shared/datasets) is skipped, with the
reason, when one is absent. `--smoke` runs every script in its smallest mode (NAME.smoke.json), to
check that they all still work; scripts without one are skipped.

Usage: python bench/run_all.py [--only a,b] [--timeout SECONDS] [--smoke]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _common as common  # noqa: E402

BENCH = common.BENCH
ROOT = common.ROOT
RESULTS = common.RESULTS_DIR
DEFAULT_TIMEOUT_S = 1800


def scripts(only: list[str]) -> list[Path]:
    found = sorted(p for p in BENCH.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    return [p for p in found if not only or p.stem in only]


def needed_datasets(script: Path) -> tuple[str, ...]:
    """The script's literal `DATASETS_NEEDED = (...)`, read without importing it (that imports TF)."""
    for node in ast.parse(script.read_text(errors="replace")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DATASETS_NEEDED" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def has_smoke_mode(script: Path) -> bool:
    return "common.parser(" in script.read_text(errors="replace")


def run_one(script: Path, timeout: int, smoke: bool = False) -> dict:
    """Runs one script; returns `{"name", "status", "seconds", "result"}`.

    A smoke run leaves the datasets check to the script: some smoke modes use the built-in set.
    """
    if smoke:
        reason = None if has_smoke_mode(script) else "no --smoke mode"
    else:
        reason = common.missing_datasets(*needed_datasets(script))
    if reason:
        return {"name": script.stem, "status": f"skipped ({reason})", "seconds": 0.0}
    result_file = common.results_path(script.stem, smoke)
    before = result_file.stat().st_mtime if result_file.exists() else None
    start = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    print(f"=== {script.name}", flush=True)
    try:
        proc = subprocess.run([sys.executable, str(script), *(["--smoke"] if smoke else [])], cwd=ROOT,
                              env=env, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    fresh = result_file.exists() and result_file.stat().st_mtime != before
    result = json.loads(result_file.read_text()) if fresh else None
    if status == "ok" and result is None:
        status = "ok (no new results file)"
    return {"name": script.stem, "status": status, "seconds": round(seconds, 1), "result": result}


def summary_text(result: dict | None) -> str:
    """One line from a results file: its `summary` dict, else its top-level numbers."""
    if not result:
        return ""
    summary = result.get("summary")
    if not isinstance(summary, dict):
        summary = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    text = ", ".join(f"{k}={v}" for k, v in summary.items())
    if "passed" in result:
        text += f"  [target {result.get('target', '')}: {'met' if result['passed'] else 'NOT met'}]"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated script names (without .py)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds per script")
    parser.add_argument("--smoke", action="store_true", help="each script's smallest run (NAME.smoke.json)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    outcomes = [run_one(script, args.timeout, args.smoke) for script in scripts(only)]
    print("\n=== summary")
    width = max([len(o["name"]) for o in outcomes] + [9])
    print(f"{'benchmark':<{width}}  {'status':<10}  {'seconds':>7}  result")
    for o in outcomes:
        print(f"{o['name']:<{width}}  {o['status']:<10}  {o['seconds']:>7}  {summary_text(o.get('result'))}")
    machine = next((o["result"].get("machine") for o in outcomes if o.get("result") and o["result"].get("machine")), None)
    if machine:
        print(f"machine: {machine}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"run_all{'.smoke' if args.smoke else ''}.json").write_text(json.dumps(
        [{k: v for k, v in o.items() if k != "result"} | {"summary": summary_text(o.get("result"))} for o in outcomes],
        indent=1))
    return 0 if all(o["status"].startswith(("ok", "skipped")) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
