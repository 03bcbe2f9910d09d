"""Fine-tuning that earns its place (issue 13 §1): blocks, augmented activations, two rates, warm-up
and cosine, the best epoch by accuracy then loss, and the learning-rate finder."""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import make_image_folder

from lib.backbones.registry import get_spec
from lib.data.augment import AugmentConfig, build_augmentation
from lib.data.sources import load_dataset
from lib.errors import TransferLabError
from lib.models import (
    HeadConfig,
    build_body,
    copy_body,
    count_blocks,
    is_batchnorm,
    top_blocks_layer_count,
    unfreeze_blocks,
)
from lib.training import (
    SELECTED_BY,
    BestWeights,
    TrainConfig,
    build_lr_schedule,
    fine_tune,
    make_optimizer,
    train,
)
from lib.training.callbacks import is_better
from lib.training.fast_path import augmented_activations, copy_orders
from lib.training.lr_find import smooth_losses, suggest_rate

TINY_CUTS = get_spec("tiny_random").cut_points


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("toy") / "toy", {"red": 16, "green": 16, "blue": 16})
    return load_dataset(str(root))


def _config(**overrides) -> TrainConfig:
    base = TrainConfig(backbone="tiny_random", data="toy", epochs=3, batch_size=8, learning_rate=0.01,
                       early_stopping_patience=None, test_split=0.0,
                       head=HeadConfig(hidden_units=8, dropout=0.25))
    return replace(base, **overrides)


# ----- unfreezing by blocks ------------------------------------------------------------------------


def test_unfreezing_blocks_takes_whole_blocks_and_keeps_batchnorm_frozen(tiny_backbone):
    body = copy_body(build_body(tiny_backbone))
    assert count_blocks(body, TINY_CUTS) == 3  # block2, block3, and the top activation
    assert unfreeze_blocks(body, TINY_CUTS, 2) == ["block3_conv"]
    trainable = {layer.name for layer in body.layers if layer.trainable}
    assert trainable == {"block3_conv", "block3_out", "top_activation"}
    assert unfreeze_blocks(body, TINY_CUTS, 3) == ["block2_conv", "block3_conv"]
    # More blocks than the body has unfreezes them all; the stem below the first cut stays frozen.
    assert unfreeze_blocks(body, TINY_CUTS, 99) == ["block2_conv", "block3_conv"]
    assert not body.get_layer("block1_conv").trainable
    for layer in body.layers:
        if is_batchnorm(layer):
            assert not layer.trainable, layer.name
    assert top_blocks_layer_count(body, TINY_CUTS, 2) == 4
    with pytest.raises(TransferLabError, match="unfreeze_blocks=0"):
        unfreeze_blocks(body, TINY_CUTS, 0)


def test_default_fine_tuning_unfreezes_blocks_and_caches_at_a_block_end(tiny_backbone, toy, tmp_path):
    frozen = train(_config(epochs=1), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    tuned = fine_tune(frozen, epochs=1, unfreeze_blocks=2)
    summary = tuned.metrics["phases"]["fine_tune"]
    assert summary["activation_cache_at"] == "block2_out"
    assert summary["unfrozen_layers"] == 1
    assert summary["selected_by"] == SELECTED_BY == tuned.metrics["selected_by"]
    assert summary["augment_copies"] == TrainConfig().fine_tune_augment_copies
    bn = tuned.model.get_layer("body").get_layer("block3_bn")
    assert not bn.trainable


# ----- the augmented activation cache --------------------------------------------------------------


def test_augmented_activations_are_distinct_copies_and_identity_matches_the_plain_output(tiny_backbone,
                                                                                         toy):
    body = build_body(tiny_backbone)
    bottom = keras.Model(body.input, body.get_layer("block2_out").output)
    records = toy.records[:10]
    augmentation = build_augmentation(AugmentConfig(), seed=0)
    copies = augmented_activations(bottom, records, 32, augmentation, 3, num_classes=3)
    assert copies.shape == (3, 10, *bottom.output.shape[1:])
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.allclose(copies[i], copies[j]), (i, j)
    # With augmentation off the K=1 cache is exactly the frozen bottom's output on the pixels.
    identity = build_augmentation(AugmentConfig(flip=False, rotation=0, zoom=0, translation=0,
                                                contrast=0))
    plain = augmented_activations(bottom, records, 32, identity, 1, num_classes=3)
    from lib.data.pipeline import load_arrays

    pixels, _ = load_arrays(records, 3, 32)
    np.testing.assert_allclose(plain[0], np.asarray(bottom(pixels, training=False)), atol=1e-5)


def test_copy_orders_keep_each_image_and_use_every_copy():
    orders = np.stack([np.random.default_rng(e).permutation(7) for e in range(20)])
    np.testing.assert_array_equal(copy_orders(orders, 7, 1, 0), orders)
    mixed = copy_orders(orders, 7, 3, 0)
    np.testing.assert_array_equal(mixed % 7, orders)  # row c*n+i is image i: labels stay right
    assert set(np.unique(mixed // 7)) == {0, 1, 2}


def test_fine_tuning_without_augmentation_matches_the_pixel_path(tiny_backbone, toy, tmp_path):
    frozen = train(_config(epochs=1, fine_tune_augment_copies=0), backbone=tiny_backbone,
                   dataset=toy, run_dir=tmp_path / "r")
    fast = fine_tune(frozen, epochs=2, unfreeze_blocks=2, lr_factor=1.0)
    slow = fine_tune(replace(frozen, config=replace(frozen.config, use_feature_cache=False)),
                     epochs=2, unfreeze_blocks=2, lr_factor=1.0)
    assert fast.metrics["phases"]["fine_tune"]["augment_copies"] == 0
    for a, b in zip(fast.model.get_weights(), slow.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(fast.history["lr"], slow.history["lr"], rtol=1e-6)


# ----- rates: two of them, warm-up and cosine ------------------------------------------------------


def test_warmup_then_cosine_schedule_shape():
    peak, total, warmup = 1e-3, 100, 10
    schedule = build_lr_schedule(peak, total, warmup)
    rates = np.array([float(schedule(step)) for step in range(total + 1)])
    assert rates[0] == pytest.approx(0.04 * peak)
    assert np.all(np.diff(rates[: warmup + 1]) > 0)  # rises linearly to the peak
    assert rates[warmup] == pytest.approx(peak)
    assert rates.max() == pytest.approx(peak)
    assert np.all(np.diff(rates[warmup:]) <= 1e-12)  # then only falls
    assert rates[total] == pytest.approx(0.01 * peak)
    assert rates[warmup + (total - warmup) // 2] == pytest.approx(peak * (0.01 + 0.99 * 0.5), rel=1e-3)
    with pytest.raises(TransferLabError, match="warmup_steps=20"):
        build_lr_schedule(peak, 10, 20)


def test_fine_tuning_history_records_the_scheduled_body_rate(tiny_backbone, toy, tmp_path):
    frozen = train(_config(epochs=1), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    tuned = fine_tune(frozen, epochs=4, unfreeze_blocks=2, lr_factor=0.5)
    rates = tuned.history.query("phase == 'fine_tune'")["lr"].to_numpy()
    peak = frozen.config.learning_rate * 0.5
    assert rates[0] == pytest.approx(peak)  # the end of the one warm-up epoch
    assert np.all(np.diff(rates) < 0)
    assert tuned.metrics["phases"]["fine_tune"]["head_lr"] == pytest.approx(
        peak * TrainConfig().fine_tune_head_lr_factor)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_the_head_trains_at_its_own_rate(name):
    body_var, head_var = keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros(3, "float32"))
    optimizer = make_optimizer(name, 0.01, faster=[head_var], faster_factor=10.0)
    optimizer.apply_gradients([(np.ones(3, "float32"), body_var), (np.ones(3, "float32"), head_var)])
    np.testing.assert_allclose(np.asarray(head_var), 10 * np.asarray(body_var), rtol=1e-4)
    assert float(np.asarray(body_var)[0]) == pytest.approx(-0.01, rel=1e-3)


# ----- the best epoch: validation accuracy, then loss ---------------------------------------------


def test_is_better_prefers_accuracy_and_breaks_ties_on_loss():
    best = {"val_accuracy": 0.8, "val_loss": 0.5}
    assert is_better({"val_accuracy": 0.85, "val_loss": 0.9}, best)
    assert not is_better({"val_accuracy": 0.75, "val_loss": 0.1}, best)
    assert is_better({"val_accuracy": 0.8, "val_loss": 0.4}, best)
    assert not is_better({"val_accuracy": 0.8, "val_loss": 0.6}, best)
    assert is_better({"val_accuracy": 0.1, "val_loss": 9.0}, None)


def test_best_weights_keep_the_most_accurate_epoch_and_wait_for_the_loss_to_settle():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    best = BestWeights(patience=2)
    best.set_model(model)
    model.stop_training = False  # what `fit` sets before the first epoch
    best.on_train_begin()
    logs = [(0.5, 1.0), (0.7, 1.2), (0.7, 1.1), (0.6, 0.9), (0.6, 0.95), (0.6, 0.97)]
    for epoch, (acc, loss) in enumerate(logs):
        model.set_weights([np.full((1, 1), epoch, "float32")])
        best.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
        if model.stop_training:
            break
    # Epoch 3 (acc 0.7, loss 1.1) beats epoch 2 on the tie; epoch 4's lower loss is not more
    # accurate, but it resets the wait: stopping comes 2 epochs after it.
    assert best.best_epoch == 3
    assert best.early_stopped and epoch == 5
    best.on_train_end()
    assert model.get_weights()[0][0, 0] == 2.0


# ----- the learning-rate finder --------------------------------------------------------------------


def test_suggestion_sits_below_the_valley_of_a_known_curve():
    rates = np.geomspace(1e-6, 1.0, 60)
    losses = (np.log10(rates) + 2.0) ** 2 + 1.0  # lowest at 1e-2
    suggestion, minimum, steepest = suggest_rate(list(rates), list(losses))
    assert minimum == pytest.approx(1e-2, rel=0.3)
    assert suggestion == pytest.approx(minimum / 10)
    assert rates[0] <= steepest < minimum
    assert smooth_losses([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])


def _cli(capsys, argv):
    from lib.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_lr_find_cli_prints_the_sweep_and_a_suggestion_in_range(tiny_backbone, toy, capsys, tmp_path):
    data = toy.name
    code, value, err = _cli(capsys, ["lr-find", "--data", data, "--backbone", "tiny_random",
                                     "--batch-size", "8", "--steps", "40", "--start", "1e-5",
                                     "--end", "10"])
    assert code == 0, err
    assert value["phase"] == "frozen" and value["lr_factor"] is None
    rates, losses = value["rates"], value["losses"]
    assert 5 <= len(rates) == len(losses) <= 40
    assert np.all(np.diff(rates) > 0) and rates[0] == pytest.approx(1e-5)
    assert 1e-5 <= value["suggestion"] <= value["minimum"] <= 10
    # From a trained run: the fine-tuning rate, with the factor that gives it.
    run = tmp_path / "run"
    train(_config(data=data, epochs=1), backbone=tiny_backbone, dataset=toy, run_dir=run)
    code, value, err = _cli(capsys, ["lr-find", "--run", str(run), "--steps", "20"])
    assert code == 0, err
    assert value["phase"] == "fine_tune"
    assert value["lr_factor"] == pytest.approx(value["suggestion"] / 0.01)
    code, _, err = _cli(capsys, ["lr-find", "--run", str(run), "--backbone", "efficientnet_lite0"])
    assert code == 2 and "tiny_random" in err


def test_lr_find_cli_defaults_are_the_train_config_defaults():
    from lib.cli import build_parser

    args = build_parser().parse_args(["lr-find", "--data", "x"])
    defaults = TrainConfig()
    assert (args.batch_size, args.seed) == (defaults.batch_size, defaults.seed)
    train_args = build_parser().parse_args(["train", "--data", "x"])
    assert train_args.unfreeze_blocks == defaults.unfreeze_blocks
    assert train_args.fine_tune_augment_copies == defaults.fine_tune_augment_copies
    assert train_args.label_smoothing == defaults.label_smoothing
    assert train_args.patience == defaults.early_stopping_patience
    assert train_args.epochs == defaults.epochs


def test_lr_find_figure_has_a_log_axis_and_marks_the_suggestion():
    from lib.plots.training import make_lr_find_figure

    fig = make_lr_find_figure([1e-5, 1e-4, 1e-3, 1e-2], [1.0, 0.8, 0.5, 2.0], suggestion=1e-4)
    assert fig.layout.xaxis.type == "log"
    marker = fig.data[1]
    assert list(marker.x) == [1e-4] and marker.y[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="3 rates and 2 losses"):
        make_lr_find_figure([1, 2, 3], [1, 2])


# ----- BatchNorm mode while fine-tuning (the batchnorm-pitfall lesson) ---------------------------


def _moving_statistics(model: keras.Model) -> dict[str, list[np.ndarray]]:
    from lib.models import classifier_parts

    body, _ = classifier_parts(model)
    return {layer.name: [np.array(layer.moving_mean), np.array(layer.moving_variance)]
            for layer in body.layers if is_batchnorm(layer)}


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_batchnorm_mode_decides_whether_a_training_step_moves_the_statistics(tiny_backbone, toy,
                                                                             tmp_path, mode):
    from lib.models import build_logits_model
    from lib.training import unfrozen_copy

    frozen = train(_config(epochs=1), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    before = _moving_statistics(frozen.model)
    config = replace(frozen.config, unfreeze_blocks=2, batchnorm_mode=mode).validate()
    model, unfrozen = unfrozen_copy(frozen.model, config)
    pixels = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    build_logits_model(model)(pixels, training=True)  # what one step of `fit` runs
    after = _moving_statistics(model)
    np.testing.assert_array_equal(before["block2_bn"][0], after["block2_bn"][0])  # frozen below
    if mode == "inference":
        assert "block3_bn" not in unfrozen
        for name in before:
            np.testing.assert_array_equal(before[name][0], after[name][0], err_msg=name)
            np.testing.assert_array_equal(before[name][1], after[name][1], err_msg=name)
    else:
        assert "block3_bn" in unfrozen  # the unfrozen block's BatchNorm trains
        assert not np.allclose(before["block3_bn"][0], after["block3_bn"][0])
        assert not np.allclose(before["block3_bn"][1], after["block3_bn"][1])
    # The shared classifier is never touched.
    for name, stats in _moving_statistics(frozen.model).items():
        np.testing.assert_array_equal(before[name][0], stats[0], err_msg=name)


def test_batchnorm_training_mode_on_cached_activations_matches_the_pixel_path(tiny_backbone, toy,
                                                                             tmp_path):
    frozen = train(_config(epochs=1, fine_tune_augment_copies=0), backbone=tiny_backbone,
                   dataset=toy, run_dir=tmp_path / "r")
    fast = fine_tune(frozen, epochs=2, unfreeze_blocks=2, lr_factor=1.0, batchnorm_mode="training",
                     new_run=True, run_dir=tmp_path / "fast")
    slow = fine_tune(replace(frozen, config=replace(frozen.config, use_feature_cache=False)),
                     epochs=2, unfreeze_blocks=2, lr_factor=1.0, batchnorm_mode="training",
                     new_run=True, run_dir=tmp_path / "slow")
    assert fast.metrics["phases"]["fine_tune"]["activation_cache_at"] is not None
    assert slow.metrics["phases"]["fine_tune"]["activation_cache_at"] is None
    tuned = [h[h["phase"] == "fine_tune"] for h in (fast.history, slow.history)]
    for column in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(tuned[0][column], tuned[1][column], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "fast" / "config.json").read_text())["batchnorm_mode"] == "training"


def test_batchnorm_mode_is_validated():
    with pytest.raises(TransferLabError, match="batchnorm_mode='train'"):
        _config(batchnorm_mode="train").validate()
    assert TrainConfig().batchnorm_mode == "inference"
