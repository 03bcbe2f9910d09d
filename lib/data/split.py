"""Stratified, seeded train/validation/test splits that keep exact duplicates together.

Copies of one file (same sha1) always land in the same split, so a photo cannot be trained on and
then "validated" on. The split depends only on file contents, labels and the seed, not on where
the files live, so the same data gives the same split on any machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lib.data.records import DatasetIndex, ImageRecord
from lib.errors import TransferLabError

# Fractions must leave room for training data.
MAX_HELD_OUT = 0.9


@dataclass(frozen=True)
class Split:
    """Records for training, validation and test (each sorted by `(label, source)`)."""

    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]
    test: tuple[ImageRecord, ...]

    def counts(self, class_names: tuple[str, ...]) -> dict[str, dict[str, int]]:
        """Returns split name -> class name -> number of images, for tables and the run config."""
        table = {}
        for part_name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            per_class = dict.fromkeys(class_names, 0)
            for record in part:
                per_class[class_names[record.label]] += 1
            table[part_name] = per_class
        return table


def validate_fractions(val_fraction: float, test_fraction: float) -> None:
    """Checks the held-out fractions.

    Raises:
        TransferLabError: a fraction is outside [0, 1) or together they leave too little to train.
    """
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value < 1.0:
            raise TransferLabError(
                f"Received `{label}={value}`; it must be a fraction from 0 up to (not including) 1."
            )
    if val_fraction + test_fraction > MAX_HELD_OUT:
        raise TransferLabError(
            f"Received `val_fraction={val_fraction}` and `test_fraction={test_fraction}`; together "
            f"they hold out {val_fraction + test_fraction:.0%}, leaving too little to train on "
            f"(at most {MAX_HELD_OUT:.0%})."
        )


def split_dataset(
    index: DatasetIndex, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0
) -> Split:
    """Splits a dataset per class, reproducibly for a seed.

    Each class is split on its own (stratified), counting groups of identical files as one item.
    Every class gets at least one training image, and at least one validation (or test) image when
    that fraction is above 0.

    Args:
        index: the dataset.
        val_fraction: share of each class for validation. Defaults to 0.2.
        test_fraction: share of each class for the test split. Defaults to 0.0 (no test split).
        seed: the shuffle seed. Defaults to 0.

    Returns:
        The `Split`.

    Raises:
        TransferLabError: the fractions are invalid, or a class is too small for them.
    """
    validate_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    for label, groups in enumerate(groups_by_class(index)):
        n_val, n_test = held_out_sizes(
            len(groups), val_fraction, test_fraction, index.class_names[label]
        )
        order = rng.permutation(len(groups))
        for position, group_index in enumerate(order):
            part = "val" if position < n_val else "test" if position < n_val + n_test else "train"
            parts[part].extend(groups[group_index])
    key = lambda r: (r.label, r.source)  # noqa: E731
    return Split(
        train=tuple(sorted(parts["train"], key=key)),
        val=tuple(sorted(parts["val"], key=key)),
        test=tuple(sorted(parts["test"], key=key)),
    )


def groups_by_class(index: DatasetIndex) -> list[list[list[ImageRecord]]]:
    """Groups identical files (same sha1) and files each group under the class of its lowest label.

    Returns:
        For each class index, its groups of records, ordered by sha1 (so the order depends on
        content, not on paths).
    """
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in index.records:
        by_hash[record.sha1].append(record)
    per_class: list[list[list[ImageRecord]]] = [[] for _ in index.class_names]
    for sha1 in sorted(by_hash):
        group = by_hash[sha1]
        per_class[min(r.label for r in group)].append(group)
    return per_class


def held_out_sizes(
    n_groups: int, val_fraction: float, test_fraction: float, class_name: str
) -> tuple[int, int]:
    """How many groups of one class go to validation and to test.

    Rounds to the nearest count, with at least 1 for each non-zero fraction and 1 left to train.

    Raises:
        TransferLabError: the class is too small to give every split an image.
    """
    n_val = max(1, round(n_groups * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n_groups * test_fraction)) if test_fraction > 0 else 0
    if n_groups - n_val - n_test < 1:
        needed = 1 + (val_fraction > 0) + (test_fraction > 0)
        raise TransferLabError(
            f"Class '{class_name}' has only {n_groups} distinct images, too few to split with "
            f"val_fraction={val_fraction} and test_fraction={test_fraction}: it needs at least "
            f"{needed} (one per split). Add images or lower the fractions."
        )
    return n_val, n_test
