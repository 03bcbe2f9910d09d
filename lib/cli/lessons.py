"""`lessons list`, `lessons run NAME --out DIR` and `lessons prepare`: the Lessons page's
computations, headless.

`run` writes the lesson's images (PNG) and figures (HTML) and prints its key numbers as JSON, so a
teacher can prepare slides and the lesson's claim can be checked.
"""

from __future__ import annotations

import argparse
import sys

from lib.errors import TransferLabError


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["eps=4", "photo=coffee"]` -> `{"eps": "4", "photo": "coffee"}`.

    Raises:
        TransferLabError: an entry without `=`.
    """
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TransferLabError(f"Received `--param {pair}`; write KEY=VALUE, e.g. eps=4.")
        params[key.strip()] = value.strip()
    return params


def list_command(args: argparse.Namespace) -> list[dict]:
    from lib.lessons import list_lessons

    return [lesson.describe() for lesson in list_lessons()]


def run_command(args: argparse.Namespace) -> dict:
    from lib.lessons import coerce_params, default_models, get_lesson
    from lib.lessons.output import write_lesson_result

    lesson = get_lesson(args.name)
    params = coerce_params(lesson, parse_params(args.param))
    print(f"running {lesson.name} ({lesson.timing})", file=sys.stderr)
    result = lesson.run(default_models(), **params)
    files = write_lesson_result(result, args.out) if args.out else []
    return {"lesson": lesson.name, "params": params, **result["numbers"], "files": files}


def prepare_command(args: argparse.Namespace) -> dict:
    from lib.lessons import default_models
    from lib.lessons.prepare import prepare_lessons

    def on_progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr)

    return prepare_lessons(default_models(), on_progress=on_progress)


def register(subparsers) -> None:
    parser = subparsers.add_parser("lessons", help="the guided lessons: list them, run one headless")
    commands = parser.add_subparsers(dest="lessons_command", metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="print every lesson as JSON")
    listing.set_defaults(handler=list_command)
    running = commands.add_parser("run", help="run a lesson; write its figures, print its numbers")
    running.add_argument("name", help="the lesson, e.g. features (see `lessons list`)")
    running.add_argument("--out", help="folder for the images (PNG), figures (HTML), numbers.json")
    running.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="override a lesson default, e.g. --param eps=4 (repeatable)")
    running.set_defaults(handler=run_command)
    preparing = commands.add_parser(
        "prepare", help="warm the caches every lesson uses; print each lesson's time, cold and warm")
    preparing.set_defaults(handler=prepare_command)
