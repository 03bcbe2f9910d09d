"""`attack` (and `attack --sweep`), `ideal` and `gradcam`: look inside a classifier from the terminal.

JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from lib.backbones.imagenet import resolve_class
from lib.cli.predict import add_model_source, load_model_source
from lib.errors import TransferLabError
from lib.images import load_image, save_image
from lib.inside.canvas import IdealSettings
from lib.inside.perturb import DEFAULT_MARGIN, METHODS, NORMS

if TYPE_CHECKING:
    from lib.inside.probe import ModelProbe

# Images a `--data` sweep attacks unless `--limit` says otherwise.
DEFAULT_SWEEP_LIMIT = 32


def load_probe(args: argparse.Namespace) -> ModelProbe:
    """The `--backbone`/`--run` model wrapped in a probe (built once per process)."""
    # Here, not at the top: the parser must load without TensorFlow (see `lib.cli.main`).
    from lib.inside.probe import ModelProbe

    model, labels = load_model_source(args)
    return ModelProbe(model, labels)


def top1(entry: dict) -> dict:
    """`{"index", "label", "prob"}` of a top-k entry."""
    return {"index": entry["index"], "label": entry["label"], "prob": entry["prob"]}


def attack_command(args: argparse.Namespace) -> dict:
    if args.sweep is not None:
        return sweep_command(args)
    if len(args.images) != 1 or args.out is None or args.eps is None:
        raise TransferLabError(
            f"Received {len(args.images)} image(s), `--eps={args.eps}`, `--out={args.out}`; one "
            "attack takes one IMAGE, --eps and --out (or use --sweep for several images)."
        )
    from lib.inside.attacks import attack

    probe = load_probe(args)
    image = load_image(args.images[0], probe.input_size)
    target = None if args.target is None else resolve_class(args.target, probe.labels)
    result = attack(probe, image, method=args.method, eps=args.eps, steps=args.steps, target=target,
                    norm=args.norm, random_init=args.random_start, seed=args.seed,
                    margin=args.margin)
    save_image(result.adversarial, args.out)
    return {
        "before": top1(result.before[0]),
        "after": top1(result.after[0]),
        "target": None if target is None else {
            "index": target, "label": probe.labels[target], "prob": result.target_prob_after},
        "success": result.success,
        "margin": result.margin,
        "margin_reached": result.margin_reached,
        "linf": result.linf,
        "l2": result.l2,
        "steps": result.steps,
        "method": result.method,
        "norm": result.norm,
        "eps": result.eps,
        "out": str(args.out),
    }


def parse_eps_list(text: str) -> list[float]:
    """`"0,1,2,4,8"` -> `[0.0, 1.0, 2.0, 4.0, 8.0]`.

    Raises:
        TransferLabError: an entry that is not a number, or a negative one.
    """
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise TransferLabError(
            f"Received `--sweep={text}`; give budgets in pixel units separated by commas, e.g. "
            "0,1,2,4,8."
        ) from e
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise TransferLabError(f"Received `--sweep={text}`; budgets must be numbers >= 0.")
    return values


def dataset_sample(spec: str, limit: int, size: int, labels: tuple[str, ...]):
    """Up to `limit` images spread over a dataset, and their labels as model classes.

    Returns:
        `(images (N, S, S, 3), label indices or None)`: see `lib.inside.attacks.sample_dataset`.
    """
    from lib.data.sources import load_dataset
    from lib.inside.attacks import sample_dataset

    index = load_dataset(spec)
    if not index.records:
        raise TransferLabError(f"Received `--data={spec}`, which holds no usable images.")
    return sample_dataset(index, limit, size, labels)


def sweep_command(args: argparse.Namespace) -> dict:
    """`attack --sweep`: success rate and confidence per budget over image files or a dataset."""
    eps_values = parse_eps_list(args.sweep)
    if args.target is not None:
        raise TransferLabError(f"Received `--target={args.target}`; --sweep is untargeted.")
    if (not args.images) == (args.data is None):
        raise TransferLabError(
            f"Received {len(args.images)} image file(s) and `--data={args.data}`; a sweep takes "
            "IMAGE files or --data, one of them."
        )
    if args.limit < 1:
        raise TransferLabError(f"Received `--limit={args.limit}`; use 1 or more images.")
    from lib.inside.attacks import eps_sweep

    probe = load_probe(args)
    if args.data is not None:
        images, labels = dataset_sample(args.data, args.limit, probe.input_size, probe.labels)
    else:
        images, labels = np.stack([load_image(p, probe.input_size) for p in args.images]), None

    def on_progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr)

    sweep = eps_sweep(probe, images, eps_values, labels=labels, method=args.method,
                      steps=args.steps, norm=args.norm, random_init=args.random_start,
                      margin=args.margin, seed=args.seed, on_progress=on_progress)
    return {
        "images": len(images),
        "source": args.data if args.data is not None else "files",
        "reference": "true labels" if labels is not None else "clean predictions",
        "method": args.method,
        "norm": args.norm,
        "steps": 1 if args.method == "fgsm" else args.steps,
        "margin": args.margin,
        "sweep": [
            {"eps": e, "success_rate": rate, "robust_accuracy": robust, "mean_confidence": conf}
            for e, rate, robust, conf in zip(sweep.eps, sweep.success_rate, sweep.robust_accuracy,
                                             sweep.mean_confidence, strict=True)
        ],
    }


def ideal_command(args: argparse.Namespace) -> dict:
    if (args.layer is None) != (args.channel is None) or (args.class_ is None) == (
            args.layer is None):
        raise TransferLabError(
            f"Received `--class={args.class_}`, `--layer={args.layer}`, `--channel={args.channel}`;"
            " give --class, or --layer with --channel."
        )
    from lib.inside.ideal import ideal_image

    probe = load_probe(args)
    index = None if args.class_ is None else resolve_class(args.class_, probe.labels)
    defaults = IdealSettings()
    settings = IdealSettings(
        steps=args.steps, size=args.size, seed=args.seed,
        tv_weight=defaults.tv_weight if args.tv is None else args.tv,
        jitter=defaults.jitter if args.jitter is None else args.jitter,
    )
    began = time.perf_counter()
    result = ideal_image(probe, index, settings, layer=args.layer, channel=args.channel)
    save_image(result.image, args.out)
    return {
        "class": None if index is None else {"index": index, "label": probe.labels[index]},
        "layer": args.layer,
        "channel": args.channel,
        "prob": result.prob,
        "steps": result.steps,
        "seconds": round(time.perf_counter() - began, 3),
        "tv": settings.tv_weight,
        "size": result.image.shape[0],
        "out": str(args.out),
    }


def gradcam_command(args: argparse.Namespace) -> dict:
    from lib.inside.gradcam import gradcam

    probe = load_probe(args)
    image = load_image(args.image, probe.input_size)
    index = None if args.class_ is None else resolve_class(args.class_, probe.labels)
    result = gradcam(probe, image, index, layer=args.layer)
    save_image(result.overlay, args.out)
    return {
        "class": {"index": result.class_index, "label": result.label, "prob": result.prob},
        "predicted": top1(result.top[0]),
        "layer": result.layer,
        "heatmap_shape": list(result.heatmap.shape),
        "out": str(args.out),
    }


def register(subparsers) -> None:
    p = subparsers.add_parser("attack", help="an adversarial example (FGSM or PGD), or an eps "
                              "sweep over images (--sweep)")
    add_model_source(p)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="the image to attack (several with --sweep)")
    p.add_argument("--method", choices=METHODS, default="pgd", help="default pgd")
    p.add_argument("--eps", type=float, help="budget in pixel units (0-255); needed without --sweep")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--target", help="class index or name to reach (default: untargeted)")
    p.add_argument("--norm", choices=NORMS, default="linf", help="default linf")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="PGD goes on until the goal leads by this probability on the saved, "
                   f"whole-pixel image (default {DEFAULT_MARGIN:g}; 0 stops at the boundary)")
    p.add_argument("--random-start", action="store_true", help="PGD starts inside the ball")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="where to write the adversarial PNG (needed without --sweep)")
    p.add_argument("--sweep", metavar="EPS,EPS,...",
                   help="untargeted sweep over these budgets in pixel units, e.g. 0,1,2,4,8: JSON "
                   "with success rate and mean confidence per eps")
    p.add_argument("--data", help="sweep over a dataset (folder, zip, builtin:NAME) instead of "
                   "files; with class names the model knows, success means misclassified")
    p.add_argument("--limit", type=int, default=DEFAULT_SWEEP_LIMIT,
                   help=f"images taken from --data, spread over it (default {DEFAULT_SWEEP_LIMIT})")
    p.set_defaults(handler=attack_command)

    p = subparsers.add_parser("ideal", help="the image the model finds most like a class "
                              "(or that most excites a channel)")
    add_model_source(p)
    p.add_argument("--class", dest="class_", metavar="CLASS",
                   help="class index or name whose logit is maximised")
    p.add_argument("--layer", help="instead of a class: a feature-map layer (with --channel)")
    p.add_argument("--channel", type=int, help="the channel of --layer to maximise")
    p.add_argument("--steps", type=int, default=IdealSettings.steps, help="default 200")
    p.add_argument("--tv", type=float, default=None,
                   help=f"total-variation weight (default {IdealSettings.tv_weight:g})")
    p.add_argument("--jitter", type=int, default=None,
                   help=f"random shift in pixels per step (default {IdealSettings.jitter})")
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where to write the PNG")
    p.set_defaults(handler=ideal_command)

    p = subparsers.add_parser("gradcam", help="Grad-CAM heatmap over an image")
    add_model_source(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--class", dest="class_", metavar="CLASS",
                   help="class to explain (default: the predicted one)")
    p.add_argument("--layer", help="feature-map layer (default: the last one)")
    p.add_argument("--out", required=True, help="where to write the overlay PNG")
    p.set_defaults(handler=gradcam_command)
