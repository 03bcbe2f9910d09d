"""`attack`, `ideal` and `gradcam`: look inside a classifier from the terminal (JSON on stdout)."""

from __future__ import annotations

import argparse
import time

from lib.backbones.imagenet import resolve_class
from lib.cli.predict import add_model_source, load_model_source
from lib.errors import TransferLabError
from lib.images import load_image, save_image
from lib.inside.attacks import METHODS, NORMS, attack
from lib.inside.gradcam import gradcam
from lib.inside.ideal import IdealSettings, ideal_image
from lib.inside.probe import ModelProbe


def load_probe(args: argparse.Namespace) -> ModelProbe:
    """The `--backbone`/`--run` model wrapped in a probe (built once per process)."""
    model, labels = load_model_source(args)
    return ModelProbe(model, labels)


def top1(entry: dict) -> dict:
    """`{"index", "label", "prob"}` of a top-k entry."""
    return {"index": entry["index"], "label": entry["label"], "prob": entry["prob"]}


def attack_command(args: argparse.Namespace) -> dict:
    probe = load_probe(args)
    image = load_image(args.image, probe.input_size)
    target = None if args.target is None else resolve_class(args.target, probe.labels)
    result = attack(probe, image, method=args.method, eps=args.eps, steps=args.steps, target=target,
                    norm=args.norm, random_init=args.random_start, seed=args.seed)
    save_image(result.adversarial, args.out)
    return {
        "before": top1(result.before[0]),
        "after": top1(result.after[0]),
        "target": None if target is None else {
            "index": target, "label": probe.labels[target], "prob": result.target_prob_after},
        "success": result.success,
        "linf": result.linf,
        "l2": result.l2,
        "steps": result.steps,
        "method": result.method,
        "norm": result.norm,
        "eps": result.eps,
        "out": str(args.out),
    }


def ideal_command(args: argparse.Namespace) -> dict:
    if (args.layer is None) != (args.channel is None) or (args.class_ is None) == (
            args.layer is None):
        raise TransferLabError(
            f"Received `--class={args.class_}`, `--layer={args.layer}`, `--channel={args.channel}`;"
            " give --class, or --layer with --channel."
        )
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
    p = subparsers.add_parser("attack", help="an adversarial example (FGSM or PGD)")
    add_model_source(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--method", choices=METHODS, default="pgd", help="default pgd")
    p.add_argument("--eps", type=float, required=True, help="budget in pixel units (0-255)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--target", help="class index or name to reach (default: untargeted)")
    p.add_argument("--norm", choices=NORMS, default="linf", help="default linf")
    p.add_argument("--random-start", action="store_true", help="PGD starts inside the ball")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where to write the adversarial PNG")
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
