"""`export-hub`: a registry backbone as a hub-format image feature-vector SavedModel."""

from __future__ import annotations

import argparse
import time


def export_hub_command(args: argparse.Namespace) -> dict:
    from lib.backbones.export import export_hub

    start = time.perf_counter()
    result = export_hub(args.backbone, args.out, cut=args.cut)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-hub",
        help="write a backbone as a TF Hub image feature-vector SavedModel ([0,1] images -> features)",
    )
    p.add_argument("--backbone", required=True, help="registry name, e.g. efficientnet_lite0")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--cut", default=None, help="cut point to export (default: the feature layer, pooled)")
    p.set_defaults(handler=export_hub_command)
