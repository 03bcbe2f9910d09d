"""Which `tf.distribute` strategy a training runs under: several GPUs on one worker train in step.

With more than one GPU visible to the process, a run builds, compiles and fits its models under
`tf.distribute.MirroredStrategy` (one replica per GPU, gradients summed across replicas each
step). Otherwise it runs under no strategy at all: the code path, and the numbers, of a single
device. `TRANSFERLAB_STRATEGY` overrides the choice:

    auto       (or unset) mirrored over the GPUs when there are two or more, else the default
    default    never distribute
    mirrored   mirrored over the GPUs, or over the CPU logical devices when there is no GPU
               (tests configure two logical CPUs to run this path on a CPU-only machine)

`TrainConfig.batch_size` is the **global** batch: Keras splits each batch across the replicas, so
each GPU sees `batch_size / replicas` images per step and a run's schedule (steps per epoch,
learning rate) does not change with the number of GPUs. Scale the batch size with the GPUs to
keep each one busy. The from-scratch baseline always trains on one device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import tensorflow as tf

from lib.errors import TransferLabError

STRATEGY_ENV = "TRANSFERLAB_STRATEGY"
AUTO, DEFAULT, MIRRORED = "auto", "default", "mirrored"
STRATEGY_CHOICES = (AUTO, DEFAULT, MIRRORED)


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy a run uses, and what its config records.

    Attributes:
        name: "default" or "mirrored".
        devices: the replicas' devices ("" for the default strategy's one device).
        strategy: the `tf.distribute.Strategy`, or None for the default (no scope entered).
    """

    name: str
    devices: tuple[str, ...]
    strategy: tf.distribute.Strategy | None = None

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def facts(self) -> dict:
        """What a run's `config.json` records: `{"strategy", "replicas", "strategy_devices"}`."""
        return {"strategy": self.name, "replicas": self.replicas,
                "strategy_devices": list(self.devices)}


# No strategy: the one-device path (the from-scratch baseline always takes it).
ONE_DEVICE = StrategyChoice(DEFAULT, ())


def requested_strategy(value: str | None = None) -> str:
    """The `TRANSFERLAB_STRATEGY` setting, checked.

    Args:
        value: the setting. Defaults to None: read the environment ("auto" when unset).

    Raises:
        TransferLabError: a value other than auto, default or mirrored (echoed).
    """
    value = (os.environ.get(STRATEGY_ENV, "") if value is None else value).strip().lower() or AUTO
    if value not in STRATEGY_CHOICES:
        raise TransferLabError(f"Received `{STRATEGY_ENV}={value}`; use one of {', '.join(STRATEGY_CHOICES)}.")
    return value


def replica_devices(kind: str) -> list[str]:
    """Names of the logical devices of `kind` ("GPU" or "CPU") this process sees."""
    return [d.name for d in tf.config.list_logical_devices(kind)]


def choose_strategy(value: str | None = None) -> StrategyChoice:
    """Picks the strategy for a training (see the module docstring).

    Args:
        value: "auto", "default" or "mirrored". Defaults to None: `TRANSFERLAB_STRATEGY`, or auto.

    Returns:
        A `StrategyChoice`; its `strategy` is None for the default, so nothing changes on one device.
    """
    value = requested_strategy(value)
    gpus = replica_devices("GPU")
    if value == DEFAULT or (value == AUTO and len(gpus) < 2):
        return StrategyChoice(DEFAULT, ())
    devices = gpus or replica_devices("CPU")
    return StrategyChoice(MIRRORED, tuple(devices), tf.distribute.MirroredStrategy(devices))


@contextlib.contextmanager
def strategy_scope(choice: StrategyChoice) -> Iterator[StrategyChoice]:
    """Enters the choice's scope (variables created inside are mirrored); the default enters nothing."""
    if choice.strategy is None:
        yield choice
        return
    with choice.strategy.scope():
        yield choice


def even_batches(dataset: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """Tops each batch up to a multiple of `replicas` by repeating its first rows.

    Keras 3.15 under `MirroredStrategy` fails on a first batch that does not split evenly (it
    averages the replicas' shards to build the model) and on a batch that leaves a replica empty
    (the last, short one). Repeating at most `replicas - 1` rows of a short batch keeps the step
    count and order of the run; those rows weigh a little more in that one step.

    Args:
        dataset: batches of `(x, y)` (any structure of tensors with the batch first).
        replicas: the strategy's replicas in sync; 1 returns `dataset` as it is.

    Returns:
        The dataset, each batch's size a multiple of `replicas`.
    """
    if replicas <= 1:
        return dataset

    def top_up(*batch):
        n = tf.shape(tf.nest.flatten(batch)[0])[0]
        rows = tf.range(n + (-n) % replicas) % n  # 0..n-1, then the first rows again
        topped = tf.nest.map_structure(lambda t: tf.gather(t, rows), batch)
        return topped if len(topped) > 1 else topped[0]

    return dataset.map(top_up)
