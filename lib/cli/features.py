"""`features`: the frozen-phase feature extraction alone, timed, so anyone can measure the engines."""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from lib.errors import TransferLabError

ENGINE_CHOICES = ("tf", "litert")


def prepare_engine(body, engine: str | None) -> None:
    """Converts the body for LiteRT before the clock starts (once per cache; a no-op after)."""
    from lib.engine import LITERT, TF, EngineUnavailable, cached_tflite, resolve_engine

    wanted = resolve_engine(engine)
    if wanted == TF:
        return
    try:
        cached_tflite(body, name=body.name)
    except EngineUnavailable as e:
        if wanted == LITERT:
            raise TransferLabError(f"The LiteRT engine was asked for but cannot run: {e}") from e
        print(f"LiteRT unavailable, TensorFlow will run: {e}", file=sys.stderr)


def features_command(args: argparse.Namespace) -> dict:
    from lib.backbones import load_backbone
    from lib.data.sources import load_dataset
    from lib.features import extract_features_run
    from lib.models import build_body
    from lib.storage import atomic_write_bytes

    out = Path(args.out).expanduser()
    if out.suffix != ".npz":
        raise TransferLabError(f"Received `--out {args.out}`; give a file name ending in .npz.")
    if args.batch_size < 1:
        raise TransferLabError(f"Received `--batch-size {args.batch_size}`; use 1 or more.")
    dataset = load_dataset(args.data)
    backbone = load_backbone(args.backbone)
    body = build_body(backbone, args.cut)
    cut = args.cut or backbone.spec.feature_layer
    prepare_engine(body, args.engine)
    start = time.perf_counter()
    run = extract_features_run(body, dataset.records, backbone.spec.input_size,
                               batch_size=args.batch_size, engine=args.engine)
    seconds = time.perf_counter() - start
    if run.fallback_reason:
        print(f"engine: TensorFlow ({run.fallback_reason})", file=sys.stderr)
    buffer = io.BytesIO()
    np.savez(buffer, features=run.features,
             labels=np.array([r.label for r in dataset.records], np.int32),
             paths=np.array([str(r.path) for r in dataset.records]),
             class_names=np.array(dataset.class_names), engine=np.array(run.engine),
             backbone=np.array(args.backbone), cut=np.array(cut))
    atomic_write_bytes(out, buffer.getvalue())
    n = len(dataset.records)
    return {"n": n, "seconds": round(seconds, 3), "img_per_s": round(n / seconds, 2),
            "engine": run.engine, "backbone": args.backbone, "cut": cut}


def register(subparsers) -> None:
    p = subparsers.add_parser("features", help="extract (pooled) features of a dataset, timed")
    p.add_argument("--data", required=True, help="folder of class folders, .zip, or builtin:NAME")
    p.add_argument("--backbone", required=True, help="registry name, e.g. efficientnet_lite0")
    p.add_argument("--cut", default=None, help="cut point (default: the top feature layer)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                   help="force an engine (default: $TRANSFERLAB_ENGINE, else LiteRT with a "
                        "TensorFlow fallback)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--out", required=True, help="where to write features and labels (.npz)")
    p.set_defaults(handler=features_command)
