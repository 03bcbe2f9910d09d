"""Adversarial attacks on the tiny random backbone: budgets, valid pixels, loss direction."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tensorflow as tf

from lib.errors import TransferLabError
from lib.inside.attacks import attack, attack_batch, eps_sweep
from lib.inside.probe import ModelProbe


@pytest.fixture(scope="module")
def probe(tiny_backbone) -> ModelProbe:
    """One probe per module, so its compiled steps are traced once (as the page and CLI do)."""
    return ModelProbe(tiny_backbone.model, [f"class{i}" for i in range(10)])


def images(n: int, low: float = 0.0, high: float = 255.0, seed: int = 0) -> np.ndarray:
    """(n, 32, 32, 3) float32 whole-number pixels (as read from a file), uniform in [low, high]."""
    return np.rint(np.random.default_rng(seed).uniform(low, high, (n, 32, 32, 3))).astype(np.float32)


def cross_entropy(probe: ModelProbe, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    logits = probe.scores(tf.constant(x), training=False)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=classes, logits=logits).numpy()


def test_fgsm_keeps_linf_within_eps_and_does_not_lower_the_loss(probe):
    x = images(8, 60, 190)  # away from 0 and 255, so clipping does not interfere
    reference = probe.probabilities(x).argmax(-1)
    eps = 1.0
    adv, steps = attack_batch(probe, x, reference, targeted=False, method="fgsm", eps=eps,
                              early_stop=False, round_pixels=False)
    assert np.abs(adv - x).max() <= eps + 1e-4
    assert (steps == 1).all()
    before = cross_entropy(probe, x, reference)
    after = cross_entropy(probe, adv, reference)
    assert (after >= before - 1e-6).all()
    assert after.mean() > before.mean()


@pytest.mark.parametrize("random_init", [False, True])
def test_pgd_stays_in_the_eps_ball_and_in_valid_pixels(probe, random_init):
    x = images(6)  # full range, so clipping at 0 and 255 is exercised
    x[0] = 0.0
    x[1] = 255.0
    reference = probe.probabilities(x).argmax(-1)
    eps = 8.0
    adv, steps = attack_batch(probe, x, reference, targeted=False, method="pgd", eps=eps, steps=7,
                              random_init=random_init, early_stop=False)
    assert np.abs(adv - x).max() <= eps + 1e-4
    assert adv.min() >= 0.0 and adv.max() <= 255.0
    assert np.array_equal(adv, np.rint(adv))  # rounded to whole pixel values, as in a PNG
    assert (steps == 7).all()


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_l2_attack_respects_its_budget(probe, method):
    x = images(4, 30, 220)
    reference = probe.probabilities(x).argmax(-1)
    eps = 40.0
    adv, _ = attack_batch(probe, x, reference, targeted=False, method=method, eps=eps, steps=5,
                          norm="l2", early_stop=False)
    norms = np.sqrt(((adv - x).astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    assert (norms <= eps + 1e-3).all()
    assert norms.max() > 0


def test_targeted_pgd_raises_the_target_probability(probe):
    x = images(1, 40, 210)[0]
    target = int(np.argmin(probe.probabilities(x[None])[0]))
    result = attack(probe, x, method="pgd", eps=16, steps=10, target=target, early_stop=False)
    assert result.target == target
    assert result.target_prob_after > result.target_prob_before
    assert result.linf <= 16 + 1e-4
    assert result.l2 >= result.linf
    assert np.allclose(result.perturbation, result.adversarial - result.original)
    assert len(result.before) == len(result.after) == 5
    assert result.success == (result.after[0]["index"] == target)


def test_untargeted_success_means_the_top_class_changed(probe):
    x = images(1, 40, 210, seed=3)[0]
    result = attack(probe, x, method="pgd", eps=64, steps=10)
    assert result.success == (result.after[0]["index"] != result.before[0]["index"])
    assert 0 <= result.steps <= 10


def test_stop_event_stops_before_the_first_step(probe):
    stop = threading.Event()
    stop.set()
    result = attack(probe, images(1)[0], eps=8, steps=10, stop_event=stop)
    assert result.steps == 0
    assert result.linf == 0.0


def test_eps_sweep_reports_a_curve_and_minimal_eps(probe):
    x = images(5, 20, 230)
    seen = []
    sweep = eps_sweep(probe, x, [16, 1, 4], steps=3, on_progress=lambda d, t, m: seen.append(d))
    assert sweep.eps == [1.0, 4.0, 16.0]
    assert sweep.success.shape == (3, 5)
    assert all(0.0 <= a <= 1.0 for a in sweep.robust_accuracy)
    assert np.allclose(np.array(sweep.robust_accuracy) + np.array(sweep.success_rate), 1.0)
    for n, m in enumerate(sweep.min_eps):
        flipped = [e for e, s in zip(sweep.eps, sweep.success[:, n], strict=True) if s]
        assert m == (flipped[0] if flipped else None)
    assert seen and seen[-1] == 3


@pytest.mark.parametrize(
    "kwargs",
    [dict(eps=0), dict(eps=300), dict(eps=-1, norm="l2"), dict(method="deepfool"),
     dict(norm="l1"), dict(steps=0), dict(target=10)],
)
def test_bad_settings_are_user_errors(probe, kwargs):
    settings = dict(eps=4.0) | kwargs
    with pytest.raises(TransferLabError):
        attack(probe, images(1)[0], **settings)


def test_wrong_image_size_is_a_user_error(probe):
    with pytest.raises(TransferLabError, match="64, 64, 3"):
        attack(probe, np.zeros((64, 64, 3), np.float32), eps=4)


def test_eps_sweep_stops_and_keeps_only_complete_budgets(probe):
    stop = threading.Event()

    def on_progress(done, total, message):
        if done == 2:  # the first budget's two batches are done
            stop.set()

    sweep = eps_sweep(probe, images(10), [1, 2, 4], steps=2, on_progress=on_progress,
                      stop_event=stop)
    assert sweep.eps == [1.0]
    assert sweep.success.shape == (1, 10)


@pytest.mark.parametrize("norm,eps", [("linf", 2.5), ("l2", 75.0)])
def test_adversarial_pixels_are_whole_and_inside_the_budget(probe, norm, eps):
    """What is checked is what a PNG holds: whole pixels, still within eps (no re-rounding later)."""
    x = images(4, 30, 220, seed=5)
    reference = probe.probabilities(x).argmax(-1)
    adv, _ = attack_batch(probe, x, reference, targeted=False, eps=eps, steps=5, norm=norm,
                          early_stop=False)
    assert np.array_equal(adv, np.rint(adv))
    delta = (adv - x).astype(np.float64)
    size = np.abs(delta).max(axis=(1, 2, 3)) if norm == "linf" else np.sqrt(
        (delta**2).sum(axis=(1, 2, 3)))
    assert (size <= eps + 1e-6).all() and size.max() > 0


def test_targeted_pgd_goes_on_to_the_margin_on_the_saved_image(probe):
    from lib.images import load_image
    from lib.inside.attacks import goal_margin
    from lib.inside.display import png_bytes

    x = images(1, 40, 210, seed=2)[0]
    target = int(np.argsort(probe.probabilities(x[None])[0])[-2])  # the runner-up
    # The tiny random model is unsure of everything (top-1 ~ 0.11): a margin of 0.02 is clear for it.
    result = attack(probe, x, eps=32, steps=20, target=target, margin=0.02)
    assert result.success and result.margin_reached and result.margin == 0.02
    probs = probe.probabilities(load_image(png_bytes(result.adversarial), 32)[None])
    assert goal_margin(probs, np.array([target]), targeted=True)[0] >= 0.02
    assert result.target_prob_after == pytest.approx(float(probs[0, target]), abs=1e-6)


def test_margin_zero_stops_at_the_boundary_and_a_margin_goes_further(probe):
    x = images(1, 40, 210, seed=2)[0]
    target = int(np.argsort(probe.probabilities(x[None])[0])[-2])
    crossing = attack(probe, x, eps=32, steps=20, target=target, margin=0.0)
    clear = attack(probe, x, eps=32, steps=20, target=target, margin=0.02)
    assert crossing.success and clear.success
    assert crossing.steps <= clear.steps
    assert clear.target_prob_after > crossing.target_prob_after


def test_bad_margin_is_a_user_error(probe):
    with pytest.raises(TransferLabError, match="margin=1.5"):
        attack(probe, images(1)[0], eps=4, margin=1.5)


def test_eps_sweep_with_true_labels_and_a_clean_baseline(probe):
    x = images(6, 20, 230, seed=4)
    clean = probe.probabilities(x).argmax(-1)
    labels = (clean + np.array([0, 0, 0, 1, 1, 1])) % 10  # half the "true" labels disagree
    sweep = eps_sweep(probe, x, [0, 8], labels=labels, steps=3, norm="l2")
    assert sweep.eps == [0.0, 8.0]
    assert sweep.robust_accuracy[0] == pytest.approx(0.5)  # eps 0: the clean accuracy
    assert sweep.success_rate[1] >= sweep.success_rate[0]  # misclassified images stay a success
    assert len(sweep.mean_confidence) == 2
    assert sweep.mean_confidence[0] == pytest.approx(float(probe.probabilities(x).max(-1).mean()))
