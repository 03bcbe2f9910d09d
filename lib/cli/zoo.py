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


def zoo_command(args: argparse.Namespace):
    from lib import zoo
    from lib.backbones import get_spec

    names = [get_spec(n).name for n in parse_list(args.backbones)] or None
    batches = parse_list(args.batch, int) or list(zoo.DEFAULT_BATCHES)
    if args.measure:
        zoo.measure_zoo(names, batches, on_progress=_progress)
    table = zoo.zoo_table(names)
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
    p.set_defaults(handler=zoo_command)
