"""`export`: a trained run as Keras, SavedModel, LiteRT or ONNX, with labels and a model card."""

from __future__ import annotations

import argparse

from lib.export import FORMATS


def export_command(args: argparse.Namespace) -> dict:
    from lib.export import export_run

    return export_run(args.run, args.format, args.out)


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a run's model in a format that loads anywhere")
    p.add_argument("--run", required=True, help="a run folder written by `train`")
    p.add_argument("--format", required=True, choices=FORMATS, help="keras, saved_model, tflite or onnx")
    p.add_argument("--out", required=True, help="new (or empty) folder to write")
    p.set_defaults(handler=export_command)
