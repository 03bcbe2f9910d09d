"""Look inside, on EfficientNet-Lite0 at 224 px: attack and ideal-image speed, attack success, transfer.

1. Speed (compiled steps warmed up first; the one-off trace time is printed separately):
   FGSM on one image, PGD with 10 steps (all 10 run), and 200 ideal-image steps with the defaults.
2. Targeted PGD-10 success rate at eps = 1, 2, 4, 8 (L-inf, pixel units) over 20 images of
   ../shared/datasets/cats_vs_dogs (10 cats, 10 dogs); each image's target is the other species'
   most likely ImageNet class (dogs: 151-268, domestic cats: 281-285) for that image.
3. Transfer, the quality proxy for ideal images: for 5 classes, images made on Lite0 with the
   defaults, with the defaults but TV weight 0, and unregularised (plain pixels, no transforms),
   then the probability Lite1 (240 px) and Lite2 (260 px) give the same class.

4. Transfer over seeds (a single seed is noise: espresso's Lite2 p went from 0.34 to 0.86 between
   two seeds): for the same 5 classes, `--seeds N` images with the defaults (seeds 0..N-1), and
   per class the mean, standard deviation and minimum of the Lite1 / Lite2 probability, and how
   many seeds Lite2 reads at p >= 0.5.

Targets: PGD-10 <= 1.5 s, 200 ideal steps <= 15 s, and with the defaults Lite2 p >= 0.5 for at
least 4 of 5 seeds on every class. The machine's load average is printed with the timings: on 2
shared cores they scale with it. Writes bench/results/look_inside.json (`--speed-only` rewrites
only its timing fields, `--transfer-only` only the transfer fields; `--smoke` times Lite0 alone,
once each, with 10 ideal steps, and runs 2 seeds of one class at 10 steps read by Lite0 itself,
into look_inside.smoke.json).

Usage: python bench/look_inside.py [--speed-only | --transfer-only] [--seeds N] [--smoke]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

NAME = "look_inside"
DATASETS_NEEDED = ("cats_vs_dogs",)  # for the attack success rates (run_all skips without them)
PGD_TARGET_S = 1.5
IDEAL_TARGET_S = 15.0
ESPRESSO_TARGET_P = 0.5
EPS_GRID = (1.0, 2.0, 4.0, 8.0)
IMAGES_PER_SPECIES = 10
SPEED_REPEATS = 3
IDEAL_STEPS = 200
DOG_CLASSES = range(151, 269)
CAT_CLASSES = range(281, 286)
TRANSFER_CLASSES = (967, 1, 963, 954, 130)  # espresso, goldfish, pizza, banana, flamingo
ESPRESSO = 967
SEEDS = 5
TRANSFER_TARGET_P = 0.5
SEEDS_TARGET_SHARE = 0.8  # "at least 4 of 5 seeds"
SMOKE_STEPS = 10


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def best_of(fn, repeats: int = SPEED_REPEATS) -> float:
    return min(timed(fn)[1] for _ in range(repeats))


def speed(probe, image, repeats: int = SPEED_REPEATS, ideal_steps: int = IDEAL_STEPS) -> dict:
    from lib.inside.attacks import attack
    from lib.inside.ideal import IdealSettings, ideal_image

    _, trace_attack = timed(lambda: attack(probe, image, method="pgd", eps=4, steps=1))
    fgsm = best_of(lambda: attack(probe, image, method="fgsm", eps=4), repeats)
    pgd = best_of(lambda: attack(probe, image, method="pgd", eps=4, steps=10, target=207,
                                 early_stop=False), repeats)
    _, trace_ideal = timed(lambda: ideal_image(probe, ESPRESSO, IdealSettings(steps=2)))
    result, wall = timed(lambda: ideal_image(probe, ESPRESSO, IdealSettings(steps=ideal_steps)))
    return {"trace_attack_s": trace_attack, "fgsm_s": fgsm, "pgd10_s": pgd,
            "trace_ideal_s": trace_ideal, "ideal200_s": wall, "ideal200_loop_s": result.seconds,
            "ideal200_prob": result.prob}


def attack_success(probe) -> dict:
    import numpy as np

    from lib.images import load_image
    from lib.inside.attacks import eps_sweep

    folder = common.DATASETS / "cats_vs_dogs"
    files = []
    for species in ("cats", "dogs"):
        found = sorted((folder / species).glob("*.jpg"), key=lambda p: p.name)
        files += [(species, p) for p in found[:IMAGES_PER_SPECIES]]
    images = np.stack([load_image(p, probe.input_size) for _, p in files])
    probs = probe.probabilities(images)
    targets = []
    for (species, _), p in zip(files, probs, strict=True):
        other = DOG_CLASSES if species == "cats" else CAT_CLASSES
        targets.append(max(other, key=lambda c: p[c]))
    sweep = eps_sweep(probe, images, EPS_GRID, targets=targets, method="pgd", steps=10)
    return {"eps": sweep.eps, "success_rate": sweep.success_rate,
            "images": len(files), "min_eps": sweep.min_eps}


def transfer(probes) -> list[dict]:
    import tensorflow as tf

    from lib.inside.ideal import UNREGULARISED, IdealSettings, ideal_image, total_variation
    from lib.inside.ideal import transfer_probabilities as transfer_probs

    lite0 = probes["efficientnet_lite0"]
    others = {k: v for k, v in probes.items() if k != "efficientnet_lite0"}
    defaults = IdealSettings(steps=IDEAL_STEPS)
    settings = {f"defaults (TV {defaults.tv_weight:g})": defaults,
                "defaults, TV 0": replace(defaults, tv_weight=0.0),
                "unregularised": replace(UNREGULARISED, steps=IDEAL_STEPS)}
    rows = []
    for c in TRANSFER_CLASSES:
        for name, s in settings.items():
            result = ideal_image(lite0, c, s)
            probs = transfer_probs(result.image, c, others)
            rows.append({"class": c, "label": lite0.labels[c], "setting": name,
                         "lite0": result.prob, "lite1": probs["efficientnet_lite1"],
                         "lite2": probs["efficientnet_lite2"],
                         "total_variation": float(total_variation(tf.constant(result.image)))})
            print(f"  {lite0.labels[c]:<10} {name:<20} lite0 {result.prob:.3f}  "
                  f"lite1 {rows[-1]['lite1']:.3f}  lite2 {rows[-1]['lite2']:.3f}  "
                  f"TV {rows[-1]['total_variation']:.3f}", flush=True)
    return rows


def seed_transfer(probes, seeds: int, steps: int = IDEAL_STEPS,
                  classes: tuple[int, ...] = TRANSFER_CLASSES) -> list[dict]:
    """Lite0 ideal images with the defaults for every class and seed, read by the other models.

    Returns:
        One row per (class, seed): `class, label, seed, lite0` and one probability per other model.
    """
    from lib.inside.ideal import IdealSettings, ideal_image
    from lib.inside.ideal import transfer_probabilities as transfer_probs

    lite0 = probes["efficientnet_lite0"]
    others = {k: v for k, v in probes.items() if k != "efficientnet_lite0"} or {
        "efficientnet_lite0": lite0}  # smoke: Lite0 reads its own images
    rows = []
    for c in classes:
        for seed in range(seeds):
            result = ideal_image(lite0, c, IdealSettings(steps=steps, seed=seed))
            probs = transfer_probs(result.image, c, others)
            rows.append({"class": c, "label": lite0.labels[c], "seed": seed, "lite0": result.prob,
                         **{name.replace("efficientnet_", ""): p for name, p in probs.items()}})
            print(f"  {lite0.labels[c]:<10} seed {seed}  lite0 {result.prob:.3f}  " + "  ".join(
                f"{name.replace('efficientnet_', '')} {p:.3f}" for name, p in probs.items()),
                flush=True)
    return rows


def summarize_seeds(rows: list[dict], reader: str = "lite2",
                    threshold: float = TRANSFER_TARGET_P) -> dict:
    """Per class and overall: mean, spread and minimum of `reader`'s probability over seeds, and
    the seeds it reads at `threshold` or more.

    Returns:
        `{"per_class": {label: {"mean", "std", "min", "max", "seeds", "at_least"}}, "classes_ok",
        "classes", "mean", "std"}`; a class is ok when `at_least >= SEEDS_TARGET_SHARE * seeds`.
    """
    import numpy as np

    per_class = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        p = np.array([r[reader] for r in rows if r["label"] == label])
        per_class[label] = {"mean": float(p.mean()), "std": float(p.std(ddof=1)) if len(p) > 1 else 0.0,
                            "min": float(p.min()), "max": float(p.max()), "seeds": len(p),
                            "at_least": int((p >= threshold).sum())}
    everything = np.array([r[reader] for r in rows])
    ok = sum(v["at_least"] >= SEEDS_TARGET_SHARE * v["seeds"] for v in per_class.values())
    return {"reader": reader, "threshold": threshold, "per_class": per_class, "classes_ok": ok,
            "classes": len(per_class), "mean": float(everything.mean()),
            "std": float(everything.std(ddof=1)) if len(everything) > 1 else 0.0}


def print_seed_summary(summary: dict) -> None:
    t = summary["threshold"]
    print(f"\n{summary['reader']} over seeds: {'class':<10} {'mean':>6} {'std':>6} {'min':>6} "
          f"{'max':>6} {f'p>={t:g}':>8}")
    for label, v in summary["per_class"].items():
        print(f"{'':<{len(summary['reader']) + 13}}{label:<10} {v['mean']:>6.3f} {v['std']:>6.3f} "
              f"{v['min']:>6.3f} {v['max']:>6.3f} {v['at_least']:>4}/{v['seeds']}")
    print(f"classes with p >= {t:g} on at least {SEEDS_TARGET_SHARE:.0%} of seeds: "
          f"{summary['classes_ok']}/{summary['classes']}; all images: mean {summary['mean']:.3f} "
          f"± {summary['std']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--speed-only", action="store_true", help="time only; keep the other fields")
    which.add_argument("--transfer-only", action="store_true",
                       help="only the transfer over seeds (no timings, attacks or TV comparison); "
                            "keep the other fields")
    parser.add_argument("--seeds", type=int, default=SEEDS,
                        help=f"seeds per class for the transfer over seeds (default {SEEDS})")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"Received `--seeds={args.seeds}`; use 1 or more.")
    repeats, ideal_steps = (1, 10) if args.smoke else (SPEED_REPEATS, IDEAL_STEPS)
    names = ("efficientnet_lite0",) if args.smoke else ("efficientnet_lite0", "efficientnet_lite1",
                                                         "efficientnet_lite2")
    common.prepare()
    import numpy as np
    from PIL import Image
    from skimage import data

    from lib.backbones import load_backbone
    from lib.backbones.imagenet import imagenet_labels
    from lib.images import resize_center_crop
    from lib.inside.ideal import IdealSettings
    from lib.inside.probe import ModelProbe

    labels = imagenet_labels()
    probes = {n: ModelProbe(load_backbone(n).model, labels) for n in names}
    lite0 = probes["efficientnet_lite0"]
    if args.transfer_only:
        return transfer_over_seeds(probes, args.seeds, smoke=args.smoke)
    chelsea = np.asarray(resize_center_crop(Image.fromarray(data.chelsea()), 224), np.float32)
    print(f"Look inside on efficientnet_lite0 (224 px), {os.cpu_count()} CPUs visible, "
          f"load average {common.load_average()}")
    times = speed(lite0, chelsea, repeats, ideal_steps)
    times["load_average_after"] = common.load_average()
    print(f"{'step':<44} {'seconds':>9} {'target':>8} {'ratio':>7}")
    for label, key, target in [
        ("trace: attack step (once per model)", "trace_attack_s", None),
        (f"FGSM, one image (best of {repeats})", "fgsm_s", None),
        (f"PGD, 10 steps, one image (best of {repeats})", "pgd10_s", PGD_TARGET_S),
        ("trace: ideal step (once per model)", "trace_ideal_s", None),
        (f"{ideal_steps} ideal steps, defaults (whole call)", "ideal200_s", IDEAL_TARGET_S),
        (f"{ideal_steps} ideal steps, the loop alone", "ideal200_loop_s", None),
    ]:
        ratio = f"{times[key] / target:.2f}" if target else ""
        print(f"{label:<44} {times[key]:>9.3f} {target or '':>8} {ratio:>7}")
    print(f"load average after the timings: {times['load_average_after']}")
    if args.speed_only or args.smoke:
        saved = common.read_results(NAME, args.smoke)
        saved["speed"] = times
        saved.setdefault("ratios", {}).update({"pgd10": times["pgd10_s"] / PGD_TARGET_S,
                                               "ideal200": times["ideal200_s"] / IDEAL_TARGET_S})
        saved["machine"] = common.machine()
        path = common.write_results(NAME, saved, smoke=args.smoke, indent=2)
        print(f"wrote the timings to {path.relative_to(ROOT)}")
        if args.smoke:  # the seeds code path too, tiny
            return transfer_over_seeds(probes, 2, smoke=True)
        return 0

    reason = common.missing_datasets(*DATASETS_NEEDED)
    if not reason:
        success = attack_success(lite0)
        print(f"\nTargeted PGD-10 (L-inf) success over {success['images']} cats_vs_dogs images, "
              "target = the other species' most likely class:")
        for e, s in zip(success["eps"], success["success_rate"], strict=True):
            print(f"  eps {e:>4g}: {s:6.1%}")
    else:
        success = {"skipped": reason}
        print(f"\nAttack success skipped: {success['skipped']}")

    print(f"\nTransfer of Lite0 ideal images ({IDEAL_STEPS} steps) to Lite1 / Lite2:")
    rows = transfer(probes)
    espresso = next(r for r in rows if r["class"] == ESPRESSO and r["setting"].startswith("defaults ("))
    print(f"\n{'setting':<22} {'mean lite1':>10} {'mean lite2':>10} {'min lite2':>10}")
    summary = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == setting]
        summary[setting] = {"mean_lite1": float(np.mean([r["lite1"] for r in sel])),
                            "mean_lite2": float(np.mean([r["lite2"] for r in sel])),
                            "min_lite2": float(np.min([r["lite2"] for r in sel]))}
        s = summary[setting]
        print(f"{setting:<22} {s['mean_lite1']:>10.3f} {s['mean_lite2']:>10.3f} {s['min_lite2']:>10.3f}")
    ratio = espresso["lite2"] / ESPRESSO_TARGET_P
    print(f"espresso, defaults, seed 0: Lite2 p = {espresso['lite2']:.3f} (target >= "
          f"{ESPRESSO_TARGET_P}, ratio {ratio:.2f})")
    print(f"\nTransfer over {args.seeds} seeds, defaults ({IDEAL_STEPS} steps):")
    seed_rows = seed_transfer(probes, args.seeds)
    seeds_summary = {r: summarize_seeds(seed_rows, r) for r in ("lite1", "lite2")}
    for s in seeds_summary.values():
        print_seed_summary(s)

    path = common.write_results(NAME, {
        "backbone": "efficientnet_lite0", "cpus": os.cpu_count(), "speed": times,
        "targets": {"pgd10_s": PGD_TARGET_S, "ideal200_s": IDEAL_TARGET_S,
                    "espresso_lite2_p": ESPRESSO_TARGET_P},
        "ratios": {"pgd10": times["pgd10_s"] / PGD_TARGET_S,
                   "ideal200": times["ideal200_s"] / IDEAL_TARGET_S,
                   "espresso_lite2": ratio},
        "attack_success": success, "transfer": rows, "transfer_summary": summary,
        "transfer_seeds": seed_rows, "transfer_seeds_summary": seeds_summary,
        "ideal_defaults": asdict(IdealSettings()), "machine": common.machine(),
    }, indent=2)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


def transfer_over_seeds(probes, seeds: int, smoke: bool = False) -> int:
    """`--transfer-only` (and the end of `--smoke`): the transfer over seeds, into the results."""
    from lib.inside.ideal import IdealSettings

    steps, classes = (SMOKE_STEPS, TRANSFER_CLASSES[:1]) if smoke else (IDEAL_STEPS, TRANSFER_CLASSES)
    print(f"\nTransfer of Lite0 ideal images over {seeds} seeds, defaults ({steps} steps):")
    rows = seed_transfer(probes, seeds, steps, classes)
    readers = [k for k in ("lite1", "lite2") if k in rows[0]] or ["lite0"]
    summaries = {r: summarize_seeds(rows, r) for r in readers}
    for s in summaries.values():
        print_seed_summary(s)
    saved = common.read_results(NAME, smoke)
    saved.update({"transfer_seeds": rows, "transfer_seeds_summary": summaries,
                  "ideal_defaults": asdict(IdealSettings()), "machine": common.machine()})
    path = common.write_results(NAME, saved, smoke=smoke, indent=2)
    print(f"wrote the transfer over seeds to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
