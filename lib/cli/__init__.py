"""`python -m lib COMMAND …`: everything the UI can do, from a terminal.

Each module in this package that defines `register(subparsers)` adds one or more commands; the
parser it adds sets `handler=fn(args)`. A handler returns a JSON-serialisable value, which is printed
on stdout, or None when it printed its own output. Progress goes to stderr.

Any `TransferLabError` becomes a one-line message on stderr and exit code 2; `--debug` shows the
traceback instead.

The parser loads without TensorFlow (the command modules import it inside their handlers), and
`main` imports it, quietly, only before a command that needs it: a command whose parser sets
`needs_tensorflow=False` (`backbones`, `data`), `--help` and usage errors never load it, and a
parser's `check(args)` (e.g. an unknown `--backbone` name) runs before it loads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys

from lib.errors import TransferLabError

USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser from every command module in `lib.cli`."""
    parser = argparse.ArgumentParser(prog="python -m lib", description="TransferLab command line.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def import_tensorflow_quietly(debug: bool = False) -> None:
    """Imports TensorFlow with stderr muted, unless `debug` or it is imported already.

    TF's C++ layer prints INFO lines on import and on the first device probe that no environment
    variable silences in 2.21; they would bury the CLI's one-line error messages, so fd 2 is muted
    just for the import.

    Args:
        debug: leave stderr alone (`--debug`), so the lines show. Defaults to False.
    """
    if debug or "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, also muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def emit_json(value) -> None:
    """Prints a value as JSON on stdout (the CLI's machine-readable channel)."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Runs one command.

    Returns:
        The process exit code: 0 on success, 2 for a user error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return USER_ERROR
    try:
        if getattr(args, "check", None):  # cheap checks of the arguments, before TensorFlow
            args.check(args)
        if getattr(args, "needs_tensorflow", True):
            import_tensorflow_quietly(args.debug)
        result = args.handler(args)
    except TransferLabError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    except OSError as e:  # a full disk, a read-only or vanished folder: the person can fix these
        if args.debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    if result is not None:
        emit_json(result)
    return 0
