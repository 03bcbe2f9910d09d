"""Each lesson's claim, on real EfficientNet-Lite0 weights, through `run_lesson` (what
`python -m lib lessons run NAME` prints)."""

from __future__ import annotations

import pytest

from lib.lessons import Models, get_lesson, make_probe, run_lesson

pytestmark = pytest.mark.large

DOMESTIC_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
GOLDEN_RETRIEVER = 207


@pytest.fixture(scope="module")
def models(lite0) -> Models:
    """The session's Lite0, and one probe on it, for every lesson here."""
    probe = make_probe(lite0)

    def backbone(name: str):
        assert name == lite0.spec.name, name
        return lite0
    return Models(backbone=backbone, probe=lambda name: probe if backbone(name) else None)


def test_features_names_the_cat_and_its_maps_get_coarser(models):
    numbers = run_lesson("features", {}, models)["numbers"]
    assert any(entry["index"] in DOMESTIC_CATS for entry in numbers["top5"][:3])
    early, middle, late = numbers["cuts"]
    assert early["height"] > middle["height"] > late["height"]
    assert early["channels"] < middle["channels"] < late["channels"]


def test_adversarial_changes_the_top1_within_the_stated_eps(models):
    eps = get_lesson("adversarial").defaults["eps"]
    numbers = run_lesson("adversarial", {}, models)["numbers"]
    assert numbers["before"]["index"] in DOMESTIC_CATS
    assert numbers["success"]
    assert numbers["after"]["index"] == GOLDEN_RETRIEVER != numbers["before"]["index"]
    assert numbers["linf"] <= eps


def test_regularised_ideal_image_is_smoother_than_plain_ascent(models):
    # 50 steps instead of the lesson's 200 keep the test short (seeds 0 and 1: both images above
    # 0.99, total variation 0.085 against 0.259 and 0.088 against 0.258); the judge backbone
    # (Lite2) is left out for time (`lessons run ideal-image` prints its probabilities: 0.0001
    # against 0.86).
    numbers = run_lesson("ideal-image", {"steps": 50, "other": None}, models)["numbers"]
    plain, regularised = numbers["plain"], numbers["regularised"]
    assert plain["prob"] > 0.5 and regularised["prob"] > 0.5  # both convince the maker
    assert regularised["total_variation"] < plain["total_variation"]


def test_fine_tuning_at_a_tenth_of_the_rate_keeps_the_accuracy_the_head_rate_loses(models):
    # The lesson's own run (8 head epochs, 4 of fine-tuning), seeds 0-2: 1.0 against 0.5 (chance on
    # two classes) at the end of each curve. Half the epochs keep the test short and the claim
    # (4 and 2, seeds 0 and 1: 1.0 against 0.5 in both; about 20 s of CPU).
    numbers = run_lesson("frozen-vs-finetune", {"head_epochs": 4, "fine_tune_epochs": 2},
                         models)["numbers"]
    assert numbers["rates"]["low"] == numbers["rates"]["same"] / 10
    assert numbers["finetune_low_rate"] >= 0.9
    assert numbers["finetune_low_rate"] >= numbers["finetune_same_rate"] + 0.25


def test_batchnorm_in_training_mode_loses_what_inference_mode_keeps(models):
    # The lesson's own run (3 epochs of fine-tuning, one image per step): 1.0 against 0.875 (seed 0,
    # 0.5 on the way; validation loss 0.32 against 0.69, a coin toss's on two classes) and against
    # 0.56 (seed 1, loss 2.05). Two epochs keep the test short and the claim: 1.0 against 0.69
    # (seed 0; loss 0.54 against 1.23) and against 0.63 (seed 1; loss 0.45 against 1.76).
    numbers = run_lesson("batchnorm-pitfall", {"fine_tune_epochs": 2}, models)["numbers"]
    assert numbers["bn_inference"] >= 0.9
    assert numbers["bn_training"] <= numbers["bn_inference"] - 0.1
    curves = numbers["curves"]
    assert curves["training"]["val_loss"] >= curves["inference"]["val_loss"] + 0.2


def test_transfer_beats_scratch_by_ten_points_at_ten_digits_per_class(models):
    # One count and 4 epochs instead of the lesson's four counts and 20 keep the test short; the
    # lesson's own run (README) gives 74% against 45% at 10 per class after 20 epochs. At 4 epochs,
    # seed 0: 55% against 30%; seed 1: 55% against 26% (at 6 epochs: 65/28%, 60/25%).
    numbers = run_lesson("transfer-vs-scratch", {"images_per_class": "10", "epochs": 4},
                         models)["numbers"]
    assert numbers["images_per_class"] == [10] and numbers["test_images"] == 300
    transfer, scratch = numbers["transfer"][0], numbers["scratch"][0]
    assert transfer >= scratch + 0.10, numbers
    assert transfer > 3 * numbers["chance"]  # well above chance (10%)
    curves = numbers["curves"]
    assert max(curves["transfer"]) > max(curves["scratch"])  # a higher ceiling, not one lucky epoch


def test_fine_tuning_lifts_digits_above_the_frozen_top(models):
    # Digits are far from ImageNet: the frozen top features leave room that fine-tuning fills
    # (the lesson's own run: frozen top 80%, fine-tuned 91%). The top cut only and 6 epochs keep
    # the test short: seed 0, frozen 76% and fine-tuned 89%; seed 1, 71% and 87%.
    numbers = run_lesson("when-transfer-fails", {"cuts": "top_activation", "epochs": 6},
                         models)["numbers"]
    assert numbers["cuts"] == ["top_activation"]
    frozen, tuned = numbers["frozen"][0], numbers["fine_tuned"]
    assert frozen > 3 * numbers["chance"]
    assert tuned >= frozen + 0.03, numbers
