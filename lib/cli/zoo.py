"""`zoo`: the model zoo as this machine measures it (cached per machine fingerprint)."""

from __future__ import annotations

import argparse
import sys

from lib.errors import TransferLabError

# (column, header, format) for the text table; None prints as "-".
TEXT_COLUMNS = (
    ("name", "backbone", "{}"),
    ("input_size", "input", "{}"),
    ("params", "params M", "{:.1f}"),
    ("depth", "depth", "{}"),
    ("size_mb", "size MB", "{:.1f}"),
    ("top1", "top-1*", "{:.1f}"),
    ("top5", "top-5*", "{:.1f}"),
    ("weights", "weights", "{}"),
    ("latency_ms_b1", "ms/img b1", "{:.2f}"),
    ("latency_ms_b32", "ms/img b32", "{:.2f}"),
    ("throughput_b32", "img/s b32", "{:.1f}"),
    ("peak_mem_mb", "mem MB", "{:.0f}"),
)


def parse_list(text: str | None, kind=str) -> list:
    """Splits `a,b,c`; raises TransferLabError echoing a bad item."""
    if not text:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError as e:
        raise TransferLabError(f"Received `{text}`; expected a comma-separated list of {kind.__name__}.") from e


def _cell(row: dict, column: str, fmt: str) -> str:
    value = row.get(column)
    if value is None:
        return "-"
    if column == "params":
        value = value / 1e6
    if column == "weights" and row.get("measured_pretrained") is False and row.get("latency_ms_b1") is not None:
        return f"{value} (timed random)"
    return fmt.format(value)


def format_table(table: dict) -> str:
    """The zoo as aligned text, with the notes a reader needs under it."""
    header = [h for _, h, _ in TEXT_COLUMNS]
    body = [[_cell(r, c, f) for c, _, f in TEXT_COLUMNS] for r in table["rows"]]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in [header, *body]]
    lines += [
        "",
        f"device: {table['device']}",
        f"* {table['accuracy_note']}",
        f"depth: {table['depth_method']}",
        f"latency: {table['latency_method']}",
        f"memory: {table['memory_method']}",
    ]
    return "\n".join(lines)


def _progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


class JobProgress:
    """Prints a measuring job's progress to stderr as a worker reports it (`lib.cli.jobs.follow`)."""

    def on_message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_status(self, state: dict) -> None:
        _progress(int(state.get("done") or 0), int(state.get("total") or 0), state["message"])

    def on_extract(self, done: int, total: int) -> None:
        pass

    def on_batch_end(self, row: dict) -> None:
        pass

    def on_epoch_end(self, row: dict) -> None:
        pass


def measure_on_scheduler(names: list[str] | None, batches: list[int], scheduler: str) -> dict | None:
    """Measures on a job backend's worker, as the zoo page does, and files the rows here.

    Args:
        names: backbones to measure (None: every listed one).
        batches: batch sizes to time.
        scheduler: "local" or a Dask scheduler address.

    Returns:
        The measuring machine's fingerprint (its table is the one to show), or None when the job
        measured nothing.

    Raises:
        TransferLabError: the job could not be submitted, failed or was interrupted (its message).
    """
    from lib.cli.jobs import submit_and_follow
    from lib.jobs.zoo_tasks import load_result, store_result, zoo_measure_spec

    state = submit_and_follow(zoo_measure_spec(names, batches), scheduler, None, JobProgress())
    return store_result(load_result(state["run_dir"]))


def zoo_command(args: argparse.Namespace):
    from lib import zoo
    from lib.backbones import get_spec
    from lib.cli.train import scheduler_of

    names = [get_spec(n).name for n in parse_list(args.backbones)] or None
    batches = parse_list(args.batch, int) or list(zoo.DEFAULT_BATCHES)
    fingerprint = None
    if args.measure:
        scheduler = scheduler_of(args)
        if scheduler:  # on a worker, like the zoo page: that machine's table is the one shown
            fingerprint = measure_on_scheduler(names, batches, scheduler)
        else:
            zoo.measure_zoo(names, batches, on_progress=_progress)
    table = zoo.zoo_table(names, fingerprint=fingerprint)
    if args.json:
        return table
    print(format_table(table))
    return None


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="backbones with size, depth, published accuracy and measured latency")
    p.add_argument("--measure", action="store_true", help="measure now (else show the cached table)")
    p.add_argument("--backbones", help="comma-separated names or hub handles (default: all listed)")
    p.add_argument("--batch", default="1,32", help="batch sizes to time (default 1,32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--scheduler", default=None,
                   help="with --measure: measure on a job worker, 'local' or tcp://HOST:8786 "
                        "(default: TRANSFERLAB_SCHEDULER; unset: in this process)")
    p.set_defaults(handler=zoo_command)
