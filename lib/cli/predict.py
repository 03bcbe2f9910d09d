"""`predict` and `backbones`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lib.backbones import get_spec, list_specs
from lib.backbones.hub_compat import looks_like_handle

if TYPE_CHECKING:
    from lib.predict import LoadedClassifier


def add_model_source(parser: argparse.ArgumentParser) -> None:
    """`--backbone NAME` (ImageNet classifier) or `--run RUN_DIR` (a trained model), one required."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--backbone", help="registry name, e.g. efficientnet_lite0")
    group.add_argument("--run", help="a run directory written by `train`")


def check_model_source(args: argparse.Namespace) -> None:
    """Fails on an unknown `--backbone` name before TensorFlow loads (see `lib.cli.main`).

    A TF Hub handle is left to the loader: resolving one builds its model.

    Raises:
        TransferLabError: no such backbone (the message lists the known names).
    """
    if args.backbone is not None and not looks_like_handle(args.backbone):
        get_spec(args.backbone)


def load_classifier(*, backbone: str | None = None, run: str | None = None) -> LoadedClassifier:
    """`lib.predict.load_classifier`, imported at the first call: it loads TensorFlow, and the
    parser must load without it (see `lib.cli.main`)."""
    from lib.predict import load_classifier as load

    return load(backbone=backbone, run=run)


def load_model_source(args: argparse.Namespace):
    """Returns `(model, labels)` for `--backbone` or `--run`, through `lib.predict.load_classifier`
    (the loader the pages use too).

    Raises:
        TransferLabError: unknown backbone, a feature-vector backbone, random weights, or a bad run.
    """
    loaded = load_classifier(backbone=args.backbone, run=args.run)
    return loaded.model, list(loaded.class_names)


def predict_command(args: argparse.Namespace) -> list[dict]:
    """One row per image: `{"image", "top", "engine"}`, plus `"engine_fallback"` (why LiteRT did
    not run) when TensorFlow ran in its place."""
    from lib.predict import predict_files_run

    loaded = load_classifier(backbone=args.backbone, run=args.run)
    # A backbone's ImageNet classifier takes its evaluation crop, as on the Predict page.
    tops, run = predict_files_run(loaded.model, list(loaded.class_names), args.images, k=args.top,
                                  crop_padding=loaded.crop_padding)
    engine = {"engine": run.engine, **({"engine_fallback": run.fallback_reason}
                                       if run.fallback_reason else {})}
    return [{"image": path, "top": top, **engine}
            for path, top in zip(args.images, tops, strict=True)]


def backbones_command(args: argparse.Namespace) -> list[dict]:
    return [
        {
            "name": s.name,
            "family": s.family,
            "input_size": s.input_size,
            "preprocessing": s.preprocessing,
            "feature_dim": s.feature_dim,
            "cut_points": list(s.cut_points),
            "weights_source": s.weights_source,
            "weights": s.weights_status(),
            "top1": s.top1,
            "top5": s.top5,
            "accuracy_source": s.accuracy_source,
            "num_classes": s.num_classes,
        }
        for s in list_specs(include_hidden=args.all)
    ]


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="top-5 classes for images")
    add_model_source(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
    p.set_defaults(handler=predict_command, check=check_model_source)

    p = subparsers.add_parser("backbones", help="the backbone registry as JSON")
    p.add_argument("--all", action="store_true", help="include hidden test backbones")
    p.set_defaults(handler=backbones_command, needs_tensorflow=False)
