"""The team load bench (issue 10): many sessions train at once on one front-end, in two modes.

On one real `streamlit run` server (127.0.0.1 only), `--sessions` headless Chromium sessions each
open Train and click "Start training" at the same moment (a barrier), on the built-in data, and stay
on the Train page watching their live charts. Meanwhile an observer session loads every page in turn.
A mode ends when every job has finished or after `--timeout` seconds, whichever comes first.

Modes (`--mode`, default both, one fresh server and run store each):
* `embedded`: jobs are threads in the web process (`TRANSFERLAB_SCHEDULER` unset), with
  `--max-jobs` server job slots;
* `dask`: the server runs with `TRANSFERLAB_SCHEDULER=local`, so the job backend starts a
  `LocalCluster` of worker processes (`--workers`, `TRANSFERLAB_LOCAL_WORKERS`) and the web process
  only submits, polls and renders. Needs issue 10's `lib/jobs` package; skipped (with the reason)
  where it is missing.

Per mode it reports: jobs finished (runs whose status is done or stopped), exceptions (exception
boxes or tracebacks on any session's page, and tracebacks in the server log), the observer's page
render times (median and max; a render that never came counts as the render timeout), the peak RSS
of the web process alone, the peak of its child processes together (the Dask workers; in embedded
mode only short-lived helpers), and the head's epoch times read from the run folders (median and
max). Each observer render also records the web process's CPU seconds while it lasted (all its
threads: the render and everything else the server did meanwhile, steadier than wall time on a
shared machine), and the server logs every script run's own CPU (`TRANSFERLAB_RENDER_LOG`,
`lib.ui.timing`): the observer's first and later render of each page are reported apart, so a
cost paid on a page's first visit shows up as such. With `--py-spy SECONDS` it also samples the web process with py-spy while the jobs run and
lists the top frames (own samples and total samples), which is how the server's time was found
(issue 14).

Targets (issues 10, 14): 8 of 8 jobs finish in both modes, 0 exceptions, observer renders < 3 s.
Writes bench/results/team_load.json. Run: `python bench/team_load.py` (bounded by `--timeout` per
mode); `--smoke --mode embedded` checks the script in a few minutes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402
from tests.browser_driver import (  # noqa: E402
    NAV_PAGES,
    body_text,
    browser_missing,
    click_button,
    click_nav,
    make_driver,
    page_problems,
    script_idle,
    set_number_input,
    streamlit_server,
    wait_for,
    wait_for_title,
)

OBSERVER_TARGET_S = 3.0
RENDER_TIMEOUT_S = 120.0  # an observer render that takes longer counts as this long
SAMPLE_RSS_S = 0.5
TOP_FRAMES = 15
FINISHED = ("done", "stopped")
MODES = ("embedded", "dask")


def server_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:`port` (the streamlit server)."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    return None


def sample_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """Keeps `peak[0]` at the highest RSS (MB) of `pid` alone, and `peak[1]` at the highest sum of
    its descendants' RSS (the Dask workers), until `stop` is set."""
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
            children = 0.0
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a worker may exit between the calls
                    children += child.memory_info().rss / 2**20
            peak[1] = max(peak[1], children)
        except psutil.Error:
            return
        stop.wait(SAMPLE_RSS_S)


def dask_missing() -> str | None:
    """Why the Dask mode cannot run here, or None."""
    try:
        found = importlib.util.find_spec("lib.jobs.dask_backend") is not None
    except ModuleNotFoundError:  # lib.jobs is still the one-module embedded backend
        found = False
    if not found:
        return "lib/jobs (issue 10's job backend with TRANSFERLAB_SCHEDULER=local) is not on this branch"
    if importlib.util.find_spec("distributed") is None:
        return "distributed is not installed"
    return None


def open_train(driver, url: str, epochs: int) -> None:
    """Opens the app, goes to Train, sets the epochs and turns early stopping off."""
    driver.get(url)
    wait_for_title(driver, "TransferLab")
    click_nav(driver, "Train")
    wait_for_title(driver, "Train")
    set_number_input(driver, "Epochs", epochs)
    wait_for(lambda: script_idle(driver))
    set_number_input(driver, "Early stopping patience (0 = off)", 0)
    wait_for(lambda: script_idle(driver))


def observer_loop(driver, url: str, stop: threading.Event, times: list[dict], pid: int) -> None:
    """Loads every page in turn until `stop`: one row `{page, seconds, web_cpu_s}` per render,
    `web_cpu_s` being the CPU the web process (`pid`) used meanwhile."""
    import psutil

    server = psutil.Process(pid)

    def cpu() -> float:
        t = server.cpu_times()
        return t.user + t.system

    driver.get(url)
    wait_for_title(driver, "TransferLab", timeout=RENDER_TIMEOUT_S)
    while not stop.is_set():
        for label, title in NAV_PAGES:
            if stop.is_set():
                return
            start, used = time.perf_counter(), cpu()
            try:
                click_nav(driver, label)
                wait_for_title(driver, title, timeout=RENDER_TIMEOUT_S)
                wait_for(lambda: script_idle(driver), timeout=RENDER_TIMEOUT_S, poll=0.02)
                seconds = time.perf_counter() - start
            except (TimeoutError, LookupError):
                seconds = RENDER_TIMEOUT_S
            times.append({"page": label, "seconds": round(seconds, 3),
                          "web_cpu_s": round(cpu() - used, 3)})


def script_cpu(log: Path, observer_pages: set[str]) -> dict:
    """The observer's script runs from the server's render log (`lib.ui.timing`): per page, the
    CPU seconds of its first run and the median of the later ones.

    The observer is the session that ran the most different pages (the others stay on Train).
    """
    rows = []
    if log.is_file():
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    pages: dict[str, set] = collections.defaultdict(set)
    for row in rows:
        pages[row.get("session")].add(row.get("page"))
    if not pages:
        return {}
    observer = max(pages, key=lambda session: len(pages[session]))
    per_page: dict[str, list[float]] = collections.defaultdict(list)
    for row in rows:
        if row.get("session") == observer and row.get("page") in observer_pages:
            per_page[row["page"]].append(float(row["cpu_s"]))
    return {page: {"first_cpu_s": round(runs[0], 3), "runs": len(runs),
                   "later_median_cpu_s": round(statistics.median(runs[1:]), 3) if runs[1:] else None}
            for page, runs in per_page.items()}


def run_folders(runs_root: Path) -> list[dict]:
    """Each run's status and its epoch seconds, from the run folders.

    A job that failed before training began has no `status.json` yet; its `job.json` (the Dask
    backend's job state) then says so.
    """
    from lib.runs import read_history, read_status

    rows = []
    for run_dir in sorted(p for p in runs_root.glob("*") if p.is_dir()):
        history = read_history(run_dir)
        seconds = [float(s) for s in history.get("seconds", [])] if not history.empty else []
        status = read_status(run_dir).get("status")
        job_file = run_dir / "job.json"
        if job_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                job = json.loads(job_file.read_text())
                if job.get("status") in ("failed", "interrupted") or status is None:
                    status = job.get("status")
        rows.append({"run": run_dir.name, "status": status, "epoch_seconds": seconds})
    return rows


def py_spy_top(pid: int, seconds: int, out: Path, *, gil: bool = False) -> dict:
    """Samples `pid` with `py-spy record` for `seconds`; the top frames by own and total samples.

    `gil`: only samples of the thread holding the GIL (what keeps the page thread waiting).
    """
    raw = out / "py-spy.txt"
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
           "--format", "raw", "--output", str(raw), "--threads", "--nonblocking",
           *(["--gil"] if gil else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not raw.is_file():
        return {"error": (done.stderr or done.stdout)[-500:]}
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        n = int(count)
        samples += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    return {"samples": samples,
            "top_own": [[f, round(c / max(1, samples), 3)] for f, c in own.most_common(TOP_FRAMES)],
            "top_total": [[f, round(c / max(1, samples), 3)] for f, c in total.most_common(TOP_FRAMES)]}


def run(args: argparse.Namespace, mode: str) -> dict:
    """One mode: a fresh server and run store, the sessions' trainings and the observer."""
    workdir = Path(tempfile.mkdtemp(prefix=f"transferlab-team-load-{mode}-"))
    runs_root = workdir / "runs"
    render_log = workdir / "renders.jsonl"
    env = {"TRANSFERLAB_RENDER_LOG": str(render_log), "TRANSFERLAB_DEFAULT_BACKBONE": args.backbone, "TRANSFERLAB_DEFAULT_DATA": args.data,
           "TRANSFERLAB_RUNS": str(runs_root), "TRANSFERLAB_MAX_JOBS": str(args.max_jobs),
           "TRANSFERLAB_SCHEDULER": "local" if mode == "dask" else ""}
    if mode == "dask":
        env["TRANSFERLAB_LOCAL_WORKERS"] = str(args.workers)
    result: dict = {"mode": mode, "sessions": args.sessions, "epochs": args.epochs,
                    "backbone": args.backbone, "data": args.data, "max_jobs": args.max_jobs,
                    "workers": args.workers if mode == "dask" else None, "timeout_s": args.timeout,
                    "load_average_at_start": common.load_average()}
    drivers = []
    with streamlit_server(env, workdir / "server.log") as url:
        pid = server_pid(int(url.rsplit(":", 1)[1]))
        peak = [0.0, 0.0]
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(pid, stop, peak), daemon=True)
        sampler.start()
        try:
            drivers = [make_driver(workdir / f"chrome-{i}") for i in range(args.sessions + 1)]
            sessions, observer = drivers[:-1], drivers[-1]
            for driver in sessions:
                open_train(driver, url, args.epochs)
            barrier = threading.Barrier(len(sessions))
            errors: list[str] = []

            def start(driver) -> None:
                barrier.wait()
                try:
                    click_button(driver, "Start training")
                except TimeoutError as e:
                    errors.append(f"start: {e}")

            starters = [threading.Thread(target=start, args=(d,)) for d in sessions]
            started = time.perf_counter()
            for t in starters:
                t.start()
            for t in starters:
                t.join()
            renders: list[dict] = []
            watcher = threading.Thread(target=observer_loop, args=(observer, url, stop, renders, pid),
                                       daemon=True)
            watcher.start()
            if args.py_spy:
                time.sleep(min(20, args.py_spy))  # past the start, into the epochs
                result["py_spy"] = py_spy_top(pid, args.py_spy, workdir, gil=args.py_spy_gil)
            while time.perf_counter() - started < args.timeout:
                rows = run_folders(runs_root)
                if len(rows) >= len(sessions) and all(r["status"] in FINISHED for r in rows):
                    break
                time.sleep(2)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            stop.set()
            watcher.join(RENDER_TIMEOUT_S)
            problems = errors + [p for d in drivers for p in page_problems(d)]
            problems += [body_text(d)[:200] for d in sessions if "Unexpected error" in body_text(d)]
        finally:
            stop.set()
            for driver in drivers:
                driver.quit()
    rows = run_folders(runs_root)
    log = (workdir / "server.log").read_text(errors="replace")
    epochs = [s for r in rows for s in r["epoch_seconds"]]
    # A job's first epoch also traces its train step; the rest are the per-epoch cost.
    later = [s for r in rows for s in r["epoch_seconds"][1:]]
    render_s = [r["seconds"] for r in renders]
    web_cpu = [r["web_cpu_s"] for r in renders]
    scripts = script_cpu(render_log, {label for label, _ in NAV_PAGES})
    first_cpu = [p["first_cpu_s"] for p in scripts.values()]
    later_cpu = [p["later_median_cpu_s"] for p in scripts.values() if p["later_median_cpu_s"] is not None]
    # A page's first visit also builds what the server caches for everyone (the Lessons page's
    # backbone and first lesson); reported apart, the max above still counts it.
    seen: set = set()
    repeat_s = [r["seconds"] for r in renders if r["page"] in seen or seen.add(r["page"])]
    result.update({
        "jobs_started": len(rows),
        "jobs_finished": sum(r["status"] in FINISHED for r in rows),
        "exceptions": problems + (["Traceback in the server log"] if "Traceback" in log else []),
        "observer_renders": len(render_s),
        "observer_median_s": round(statistics.median(render_s), 2) if render_s else None,
        "observer_max_s": round(max(render_s), 2) if render_s else None,
        "observer_repeat_max_s": round(max(repeat_s), 2) if repeat_s else None,
        "observer_repeat_median_s": round(statistics.median(repeat_s), 2) if repeat_s else None,
        "observer_web_cpu_median_s": round(statistics.median(web_cpu), 3) if web_cpu else None,
        "observer_web_cpu_max_s": round(max(web_cpu), 3) if web_cpu else None,
        "observer_script_first_cpu_max_s": round(max(first_cpu), 3) if first_cpu else None,
        "observer_script_later_cpu_max_s": round(max(later_cpu), 3) if later_cpu else None,
        "observer_script_cpu": scripts,
        "peak_rss_mb": round(peak[0], 1),
        "children_peak_rss_mb": round(peak[1], 1),
        "epoch_median_s": round(statistics.median(epochs), 3) if epochs else None,
        "epoch_max_s": round(max(epochs), 3) if epochs else None,
        "later_epoch_median_s": round(statistics.median(later), 3) if later else None,
        "later_epoch_max_s": round(max(later), 3) if later else None,
        "renders": renders,
        "runs": rows,
    })
    return result


def print_summary(result: dict) -> None:
    if "skipped" in result:
        print(f"[{result['mode']}] skipped: {result['skipped']}")
        return
    where = (f"{result['workers']} Dask worker processes" if result["mode"] == "dask"
             else f"{result['max_jobs']} job slots")
    print(f"[{result['mode']}] TransferLab team load: {result['sessions']} sessions x "
          f"{result['epochs']} epochs, backbone {result['backbone']}, data {result['data']}, {where}, "
          f"load average {result['load_average_at_start']:.1f} at start")
    print(f"jobs finished {result['jobs_finished']}/{result['sessions']} "
          f"(started {result['jobs_started']}) in {result['wall_s']} s")
    print(f"exceptions {len(result['exceptions'])}: {result['exceptions'][:5]}")
    print(f"observer renders {result['observer_renders']}: median {result['observer_median_s']} s, "
          f"max {result['observer_max_s']} s (target < {OBSERVER_TARGET_S:g} s); "
          f"pages seen before: median {result['observer_repeat_median_s']} s, "
          f"max {result['observer_repeat_max_s']} s")
    print(f"web process CPU during an observer render: median {result['observer_web_cpu_median_s']} s, "
          f"max {result['observer_web_cpu_max_s']} s; the observer's own script runs: first visit "
          f"max {result['observer_script_first_cpu_max_s']} s, later visits max (of per-page "
          f"medians) {result['observer_script_later_cpu_max_s']} s CPU")
    for page, cpu in result["observer_script_cpu"].items():
        print(f"  {page}: first {cpu['first_cpu_s']} s CPU, later median {cpu['later_median_cpu_s']} s "
              f"({cpu['runs']} runs)")
    print(f"head epoch median {result['epoch_median_s']} s, max {result['epoch_max_s']} s; "
          f"after each job's first epoch: median {result['later_epoch_median_s']} s, "
          f"max {result['later_epoch_max_s']} s")
    print(f"peak RSS: web process {result['peak_rss_mb']} MB; its child processes together "
          f"{result['children_peak_rss_mb']} MB")
    spy = result.get("py_spy")
    if spy:
        if "error" in spy:
            print(f"py-spy failed: {spy['error']}")
        else:
            print(f"py-spy, {spy['samples']} samples, top frames by own samples:")
            for frame, share in spy["top_own"]:
                print(f"  {share:6.1%}  {frame}")
            print("top frames by total samples:")
            for frame, share in spy["top_total"]:
                print(f"  {share:6.1%}  {frame}")


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=8, help="training sessions (default 8)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per training (default 5)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--data", default="builtin:faces")
    p.add_argument("--max-jobs", type=int, default=2, help="TRANSFERLAB_MAX_JOBS (default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up (900)")
    p.add_argument("--py-spy", type=int, default=0, help="sample the server for N seconds")
    p.add_argument("--py-spy-gil", action="store_true",
                   help="with --py-spy: only the thread holding the GIL")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="embedded threads, a local Dask cluster, or both in turn (default both)")
    p.add_argument("--workers", type=int, default=2,
                   help="Dask worker processes in dask mode (TRANSFERLAB_LOCAL_WORKERS, default 2)")
    args = p.parse_args()
    if args.smoke:
        args.sessions, args.epochs, args.timeout, args.backbone = 2, 2, 300, "tiny_random"
    reason = browser_missing()
    if reason:
        return common.skip(reason)
    common.prepare()
    modes = MODES if args.mode == "both" else (args.mode,)
    results = {}
    for mode in modes:
        reason = dask_missing() if mode == "dask" else None
        results[mode] = {"mode": mode, "skipped": reason} if reason else run(args, mode)
        print_summary(results[mode])
    print(f"wrote {common.write_results('team_load', {'modes': results}, smoke=args.smoke)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
