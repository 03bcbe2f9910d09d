"""Multi-GPU training (`tf.distribute.MirroredStrategy`), tested on two logical CPUs.

Logical devices must be configured before TensorFlow initialises, so the mirrored runs happen in a
fresh Python process; the choice and the batch top-up are tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lib.errors import TransferLabError
from lib.training.distribute import (
    DEFAULT,
    ONE_DEVICE,
    choose_strategy,
    even_batches,
    requested_strategy,
)

ROOT = Path(__file__).resolve().parents[1]

# Trains on a toy folder under TRANSFERLAB_STRATEGY=mirrored with 2 logical CPUs: the frozen phase
# on cached features then fine-tuning on cached activations, and both phases on pixels. Prints one
# JSON line per run: what its config recorded, and the loaded model's output shape.
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    from dataclasses import replace
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[2])
    from conftest import make_image_folder
    from lib.data.sources import load_dataset
    from lib.models import HeadConfig
    from lib.predict import load_classifier
    from lib.runs import read_config, read_status
    from lib.training import TrainConfig, train
    tmp = Path(sys.argv[1])
    data = load_dataset(str(make_image_folder(tmp / "toy", {"red": 10, "green": 9, "blue": 10})))
    base = TrainConfig(backbone="tiny_random", data="toy", epochs=2, batch_size=7, learning_rate=0.01,
                       early_stopping_patience=None, test_split=0.0, fine_tune_epochs=1,
                       fine_tune_augment_copies=1, head=HeadConfig(hidden_units=8, dropout=0.25))
    for name, config in [("cached", base), ("pixels", replace(base, use_feature_cache=False))]:
        result = train(config, dataset=data, run_dir=tmp / name)
        loaded = load_classifier(run=str(result.run_dir))
        print(json.dumps({"name": name, "config": read_config(result.run_dir),
                          "status": read_status(result.run_dir)["status"],
                          "phases": sorted(set(result.history["phase"])),
                          "losses": result.history["loss"].tolist(),
                          "output": list(loaded.model.outputs[0].shape)}))
""")


def test_the_strategy_setting_is_checked():
    assert requested_strategy("") == "auto"
    assert requested_strategy(" Mirrored ") == "mirrored"
    with pytest.raises(TransferLabError, match="TRANSFERLAB_STRATEGY=bogus"):
        requested_strategy("bogus")


def test_one_device_runs_under_no_strategy():
    # This process sees one CPU and no GPU: auto and default both keep today's code path.
    for value in ("auto", "default"):
        choice = choose_strategy(value)
        assert choice.strategy is None
        assert choice.facts() == {"strategy": DEFAULT, "replicas": 1, "strategy_devices": []}
    assert ONE_DEVICE.replicas == 1


def test_even_batches_tops_short_batches_up_to_the_replicas():
    x = np.arange(7, dtype="float32")[:, None]
    batches = tf.data.Dataset.from_tensor_slices((x, x * 10)).batch(4)  # 4, then 3
    sizes = [(len(a), a.numpy()[:, 0].tolist(), b.numpy()[:, 0].tolist())
             for a, b in even_batches(batches, 2)]
    assert sizes == [(4, [0, 1, 2, 3], [0, 10, 20, 30]), (4, [4, 5, 6, 4], [40, 50, 60, 40])]
    single = tf.data.Dataset.from_tensor_slices((x[:1], x[:1])).batch(4)
    assert [len(a) for a, _ in even_batches(single, 3)] == [3]  # no replica is left empty
    assert even_batches(batches, 1) is batches


def test_mirrored_training_on_two_logical_cpus_records_the_strategy_and_loads(tmp_path):
    env = {**os.environ, "TRANSFERLAB_STRATEGY": "mirrored", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path), str(ROOT / "tests")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in runs] == ["cached", "pixels"]
    for run in runs:
        assert run["config"]["strategy"] == "mirrored"
        assert run["config"]["replicas"] == 2
        assert len(run["config"]["strategy_devices"]) == 2
        assert run["status"] == "done"
        assert run["phases"] == ["fine_tune", "frozen"]
        assert all(np.isfinite(run["losses"]))
        assert run["output"] == [None, 3]  # the head's three classes, as on one device


def test_a_one_device_run_records_the_default_strategy(tiny_backbone, tmp_path):
    from conftest import make_image_folder

    from lib.data.sources import load_dataset
    from lib.runs import read_config
    from lib.training import TrainConfig, train

    data = load_dataset(str(make_image_folder(tmp_path / "toy", {"a": 6, "b": 6})))
    result = train(TrainConfig(backbone="tiny_random", data="toy", epochs=1, batch_size=4,
                               test_split=0.0), backbone=tiny_backbone, dataset=data,
                   run_dir=tmp_path / "run")
    config = read_config(result.run_dir)
    assert (config["strategy"], config["replicas"]) == (DEFAULT, 1)
