"""Training on the tiny backbone: learning, the feature-cache fast path, fine-tuning, stop, scratch."""

from __future__ import annotations

import threading
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import make_image_folder

from lib.data.augment import AugmentConfig
from lib.data.sources import load_dataset
from lib.errors import TransferLabError
from lib.evaluate import evaluate_model
from lib.models import HeadConfig, get_body, get_head
from lib.runs import read_status
from lib.training import (
    TrainCallbacks,
    TrainConfig,
    feature_cache_reason,
    fine_tune,
    train,
    train_from_scratch,
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Three tinted-noise classes of 16 images; the tiny random body separates them a little."""
    root = make_image_folder(tmp_path_factory.mktemp("toy") / "toy",
                             {"red": 16, "green": 16, "blue": 16})
    return load_dataset(str(root))


def _config(**overrides) -> TrainConfig:
    base = TrainConfig(backbone="tiny_random", data="toy", epochs=3, batch_size=8,
                       learning_rate=0.01, early_stopping_patience=None, test_split=0.0,
                       head=HeadConfig(hidden_units=8, dropout=0.25))
    return replace(base, **overrides)


def _head_weights(result):
    return get_head(result.model).get_weights()


def test_fit_lowers_the_loss(tiny_backbone, toy, tmp_path):
    result = train(_config(epochs=8, learning_rate=0.03), backbone=tiny_backbone, dataset=toy,
                   run_dir=tmp_path / "run")
    losses = result.history["loss"].tolist()
    assert losses[-1] < losses[0]
    assert result.history["phase"].eq("frozen").all()
    assert result.metrics["evaluation"]["split"] == "val"
    assert read_status(result.run_dir)["status"] == "done"


def test_feature_cache_gives_the_same_head_as_the_slow_path(tiny_backbone, toy, tmp_path):
    extracted = []
    fast = train(_config(), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "fast",
                 callbacks=TrainCallbacks(on_extract=lambda d, t: extracted.append((d, t))))
    slow = train(_config(use_feature_cache=False), backbone=tiny_backbone, dataset=toy,
                 run_dir=tmp_path / "slow")
    assert fast.used_feature_cache and not slow.used_feature_cache
    assert extracted[-1][0] == extracted[-1][1] == len(toy.records)
    assert "turned off" in slow.feature_cache_reason
    for a, b in zip(_head_weights(fast), _head_weights(slow), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(fast.history["val_loss"], slow.history["val_loss"], atol=1e-5)
    # A later run finds the features on disk, whatever the split.
    again = train(_config(val_split=0.3), backbone=tiny_backbone, dataset=toy,
                  run_dir=tmp_path / "again")
    assert again.metrics["feature_cache"]["hit"]


def test_augmentation_turns_the_cache_off():
    assert feature_cache_reason(_config()) is None
    assert "augmentation" in feature_cache_reason(_config(augment=AugmentConfig()))
    assert feature_cache_reason(_config(augment=AugmentConfig(flip=False, rotation=0, zoom=0,
                                                              translation=0, contrast=0))) is None


def test_fine_tuning_keeps_batchnorm_statistics_and_the_shared_backbone(tiny_backbone, toy, tmp_path):
    shared_weights = [np.array(w) for w in tiny_backbone.model.get_weights()]
    shared_flags = [layer.trainable for layer in tiny_backbone.model.layers]
    frozen = train(_config(epochs=2), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    body = get_body(frozen.model)
    bn_before = {layer.name: [np.array(w) for w in layer.get_weights()]
                 for layer in body.layers if "bn" in layer.name}
    # No starting point to beat, so the last best fine-tuning epoch is kept whatever its loss.
    tuned = fine_tune(replace(frozen, metrics={}), epochs=2, unfreeze=4, lr_factor=1.0)
    assert tuned.history["phase"].tolist() == ["frozen"] * 2 + ["fine_tune"] * 2
    assert tuned.history["epoch"].tolist() == [1, 2, 3, 4]
    tuned_body = get_body(tuned.model)
    conv_before = body.get_layer("block3_conv").get_weights()[0]
    assert not np.allclose(tuned_body.get_layer("block3_conv").get_weights()[0], conv_before)
    for name, before in bn_before.items():
        layer = tuned_body.get_layer(name)
        assert not layer.trainable
        for a, b in zip(before, layer.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)  # gamma, beta, moving mean, moving variance
    for a, b in zip(shared_weights, tiny_backbone.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [layer.trainable for layer in tiny_backbone.model.layers] == shared_flags
    assert tuned.metrics["phases"]["fine_tune"]["unfrozen_layers"] == 1
    assert tuned.metrics["params"]["trainable"] > frozen.metrics["params"]["trainable"]
    assert read_status(tuned.run_dir)["status"] == "done"


def test_fine_tuning_that_never_beats_the_frozen_loss_keeps_the_frozen_weights(tiny_backbone, toy,
                                                                                 tmp_path):
    frozen = train(_config(epochs=4), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    # A huge rate wrecks the top layers at once: no epoch can beat the frozen validation loss.
    wild = replace(frozen, config=replace(frozen.config, learning_rate=5.0))
    tuned = fine_tune(wild, epochs=2, unfreeze=4, lr_factor=10.0)
    summary = tuned.metrics["phases"]["fine_tune"]
    assert not summary["improved"]
    assert summary["val_loss"] == pytest.approx(frozen.metrics["phases"]["frozen"]["val_loss"])
    for a, b in zip(frozen.model.get_weights(), tuned.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fine_tuning_on_cached_activations_matches_fine_tuning_on_pixels(tiny_backbone, toy,
                                                                         tmp_path):
    # Augmentation off: the pixel path would draw different random images than the cached copies.
    frozen = train(_config(epochs=1, fine_tune_augment_copies=0), backbone=tiny_backbone, dataset=toy,
                   run_dir=tmp_path / "r")
    fast = fine_tune(frozen, epochs=2, unfreeze=4, lr_factor=1.0)
    slow_start = replace(frozen, config=replace(frozen.config, use_feature_cache=False))
    slow = fine_tune(slow_start, epochs=2, unfreeze=4, lr_factor=1.0)
    assert fast.metrics["phases"]["fine_tune"]["activation_cache_at"] == "block2_out"
    assert slow.metrics["phases"]["fine_tune"]["activation_cache_at"] is None
    for a, b in zip(fast.model.get_weights(), slow.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(fast.history["val_loss"], slow.history["val_loss"], atol=1e-5)


def test_train_runs_both_phases_from_the_config(tiny_backbone, toy, tmp_path):
    result = train(_config(epochs=1, fine_tune_epochs=1, unfreeze=4), backbone=tiny_backbone,
                   dataset=toy, run_dir=tmp_path / "r")
    assert result.history["phase"].tolist() == ["frozen", "fine_tune"]
    assert set(result.metrics["phases"]) == {"frozen", "fine_tune"}


@pytest.mark.parametrize("use_cache", [False, True])
def test_stop_event_stops_within_one_batch(tiny_backbone, toy, tmp_path, use_cache):
    stop = threading.Event()
    batches = []

    def on_batch_end(row):
        batches.append(row)
        if len(batches) == 2:
            stop.set()

    result = train(_config(epochs=5, batch_size=2, use_feature_cache=use_cache),
                   backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r",
                   callbacks=TrainCallbacks(on_batch_end=on_batch_end), stop_event=stop)
    assert result.stopped
    assert len(batches) == 2
    # The fast path groups steps; still, it stopped inside the first epoch.
    assert batches[-1]["batch"] <= batches[-1]["batches"] and batches[-1]["epoch"] == 1
    assert result.history.empty
    assert read_status(result.run_dir)["status"] == "stopped"
    assert {"phase", "epoch", "batch", "batches", "loss", "accuracy", "eta_seconds"} <= set(batches[0])


def test_epoch_callback_reports_every_epoch(tiny_backbone, toy, tmp_path):
    rows = []
    train(_config(epochs=3), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r",
          callbacks=TrainCallbacks(on_epoch_end=rows.append))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"phase", "epochs", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(rows[0])
    assert rows[0]["epochs"] == 3


def test_early_stopping_restores_the_best_epoch(tiny_backbone, toy, tmp_path):
    # A huge rate makes validation loss blow up after the first epochs.
    result = train(_config(epochs=12, learning_rate=5.0, early_stopping_patience=1),
                   backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    frozen = result.metrics["phases"]["frozen"]
    assert frozen["early_stopped"] and frozen["epochs"] < 12
    assert frozen["val_loss"] == pytest.approx(result.history["val_loss"].min())


def test_scratch_baseline_trains_everything(tiny_backbone, toy, tmp_path):
    result = train_from_scratch(_config(epochs=2, fine_tune_epochs=1), dataset=toy,
                                run_dir=tmp_path / "s")
    assert result.history["phase"].tolist() == ["scratch"] * 3
    assert result.metrics["params"]["trainable"] > 1000
    assert not result.pretrained and not result.used_feature_cache


def test_evaluate_model_reports(tiny_backbone, toy, tmp_path):
    result = train(_config(epochs=1), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    report = evaluate_model(result.model, toy.records, toy.class_names)
    assert report["n"] == len(toy.records)
    assert np.array(report["confusion"]).sum() == len(toy.records)
    assert set(report["per_class"]) == set(toy.class_names)
    assert {"path", "source", "true", "pred", "loss", "prob"} <= set(report["top_losses"][0])
    losses = [row["loss"] for row in report["top_losses"]]
    assert losses == sorted(losses, reverse=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer='adagrad'"),
        ({"learning_rate": -1.0}, "learning_rate=-1.0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"epochs": 0}, "epochs=0"),
        ({"val_split": 0.0}, "val_split=0.0"),
        ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
        ({"early_stopping_patience": 0}, "early_stopping_patience=0"),
        ({"fine_tune_lr_factor": 0.0}, "fine_tune_lr_factor=0.0"),
    ],
)
def test_bad_settings_are_echoed(overrides, message):
    with pytest.raises(TransferLabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _config(**overrides).validate()


def test_config_round_trips():
    config = _config(augment=AugmentConfig(rotation=0.2), fine_tune_epochs=2, unfreeze_from="x")
    assert TrainConfig.from_dict({**config.to_dict(), "kind": "transfer"}) == config


def test_too_small_dataset_is_refused_clearly(tiny_backbone, tmp_path):
    root = make_image_folder(tmp_path / "small", {"a": 2, "b": 2})
    with pytest.raises(TransferLabError, match="too few to split"):
        train(_config(test_split=0.1), backbone=tiny_backbone, dataset=load_dataset(str(root)),
              run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_wrong_backbone_object_is_refused(tiny_backbone, toy):
    with pytest.raises(TransferLabError, match="efficientnet_lite0"):
        train(_config(backbone="efficientnet_lite0"), backbone=tiny_backbone, dataset=toy)


@pytest.mark.large
def test_lite0_head_on_faces_beats_chance(lite0, tmp_path):
    config = TrainConfig(backbone="efficientnet_lite0", data="builtin:faces", epochs=3)
    result = train(config, backbone=lite0, run_dir=tmp_path / "faces")
    assert result.used_feature_cache
    assert result.metrics["val_accuracy"] >= 0.75


def test_training_figures():
    import pandas as pd

    from lib.plots.training import (
        make_batch_loss_figure,
        make_confusion_figure,
        make_history_figure,
        make_runs_overlay_figure,
    )

    history = pd.DataFrame({
        "phase": ["frozen", "frozen", "fine_tune"], "epoch": [1, 2, 3],
        "loss": [1.0, 0.5, 0.4], "accuracy": [0.5, 0.8, 0.9],
        "val_loss": [1.1, 0.6, None], "val_accuracy": [0.4, 0.7, None],
    })
    scratch = history.assign(phase="scratch")
    fig = make_history_figure(history, "accuracy", overlay=scratch)
    traces = {trace.name: trace for trace in fig.data}
    assert set(traces) == {"train", "val", "scratch train", "scratch val"}
    assert traces["scratch val"].line.dash == "dash" and traces["val"].line.dash is None
    assert list(traces["val"].x) == [1, 2]  # a missing validation value is skipped, not drawn as 0
    assert fig.layout.shapes[0].x0 == 2.5  # fine-tuning starts between epochs 2 and 3
    assert not make_history_figure(history.iloc[:2]).layout.shapes
    with pytest.raises(ValueError, match="metric='f1'"):
        make_history_figure(history, "f1")
    fig = make_confusion_figure([[3, 1], [0, 4]], ["cat", "dog"])
    assert fig.data[0].customdata[0][1] == [0, 1]
    rows = [{"phase": "frozen", "epoch": 1, "batch": i, "batches": 3, "loss": 1.0 / i}
            for i in (1, 2, 3)]
    assert list(make_batch_loss_figure(rows).data[0].y) == [1.0, 0.5, 1.0 / 3]
    assert len(make_runs_overlay_figure({"a": history, "b": scratch}, "val_loss").data) == 2


def _train_pixels(result, toy) -> np.ndarray:
    """The scratch run's training images as one pixel array (unaugmented)."""
    from lib.data.pipeline import make_dataset

    size = int(result.model.inputs[0].shape[1])
    batches = make_dataset(result.split.train, toy.num_classes, size, 64, cache=False)
    return np.concatenate([x.numpy() for x, _ in batches])


def test_scratch_inference_statistics_match_the_trained_weights(tiny_backbone, toy, tmp_path):
    # Regression: the scratch baseline validated with BatchNorm moving averages that trailed the
    # fast-changing random-init weights, so inference mode disagreed with training mode (Lite0 on
    # builtin:faces predicted one class for every image: val accuracy flat at 0.5).
    result = train_from_scratch(_config(epochs=2, learning_rate=0.05), dataset=toy,
                                run_dir=tmp_path / "s")
    body = get_body(result.model)
    pixels = _train_pixels(result, toy)
    # The first BatchNorm's input does not depend on any other BatchNorm: its moving mean must be
    # the training images' mean at the final weights.
    conv = keras.Model(body.input, body.get_layer("block1_conv").output)
    mean = np.asarray(conv(pixels)).mean(axis=(0, 1, 2))
    moving = np.asarray(body.get_layer("block1_bn").moving_mean)
    np.testing.assert_allclose(moving, mean, rtol=1e-3, atol=1e-4)
    # And the features inference sees are those training mode computes on the same images.
    inference = np.asarray(body(pixels, training=False))
    training = np.asarray(body(pixels, training=True))
    assert np.abs(inference - training).mean() < 0.1 * np.abs(training).mean()


@pytest.mark.parametrize("use_cache", [True, False])
def test_head_trains_on_logits_and_the_classifier_adds_the_softmax(tiny_backbone, toy, tmp_path,
                                                                   use_cache):
    from lib.evaluate import predict_records
    from lib.models import build_logits_model, classifier_parts

    # Plain cross-entropy below: no label smoothing (the default smooths by 0.1).
    result = train(_config(epochs=2, use_feature_cache=use_cache, label_smoothing=0.0),
                   backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    assert get_head(result.model).layers[-1].name == "logits"
    assert result.model.layers[-1].name == "probabilities"
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    body, head = classifier_parts(result.model)
    logits = np.asarray(head(body(pixels, training=False)))
    np.testing.assert_allclose(np.asarray(build_logits_model(result.model)(pixels)), logits, atol=1e-5)
    np.testing.assert_allclose(np.asarray(result.model(pixels)),
                               np.asarray(keras.ops.softmax(logits)), atol=1e-5)
    # The validation loss training reported is the cross-entropy of the classifier's probabilities
    # (the model holds the best epoch): the loss read the head's output as logits.
    val = result.split.val
    probs = predict_records(result.model, val, toy.num_classes)
    cross_entropy = -np.mean(np.log(probs[np.arange(len(val)), [r.label for r in val]]))
    assert result.metrics["phases"]["frozen"]["val_loss"] == pytest.approx(cross_entropy, rel=1e-4)


def test_a_saved_run_reopens_with_its_split_and_fine_tunes_in_place(tiny_backbone, toy, tmp_path):
    from lib.runs import read_status
    from lib.training import load_train_result

    frozen = train(_config(epochs=2), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "r")
    reopened = load_train_result(frozen.run_dir, dataset=toy)
    assert reopened.split == frozen.split and reopened.config == frozen.config
    assert reopened.history["epoch"].tolist() == [1, 2] and not reopened.stopped
    tuned = fine_tune(reopened, epochs=1, unfreeze=4)
    assert tuned.run_dir == frozen.run_dir
    assert tuned.history["phase"].tolist() == ["frozen", "frozen", "fine_tune"]
    assert read_status(frozen.run_dir)["status"] == "done"


def test_the_run_says_which_engine_computed_its_features(tiny_backbone, toy, tmp_path):
    import json

    result = train(_config(), backbone=tiny_backbone, dataset=toy, run_dir=tmp_path / "run")
    engine = result.metrics["feature_cache"]["engine"]
    assert engine in ("litert", "tf")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["feature_engine"] == engine
