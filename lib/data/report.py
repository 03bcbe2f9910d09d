"""The data report: what a dataset scan found, for the Data page, the CLI and the run config.

A person should see at a glance how many usable images each class has, which files were skipped and
why, which were converted to RGB, and which files are exact copies of each other (a copy in both the
training and the validation split inflates validation accuracy).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol


class SplitParts(Protocol):
    """What the report reads of a `lib.data.split.Split` (named here so report imports no split)."""

    train: Sequence
    val: Sequence
    test: Sequence

# Below this many usable images a class gets a warning (it is still accepted from 2 up).
FEW_IMAGES_WARNING = 10
# A class this many times bigger than the smallest one gets an imbalance warning.
IMBALANCE_RATIO = 5.0


@dataclass
class DataReport:
    """What loading a dataset found.

    Attributes:
        counts: class name -> number of usable images.
        skipped: `(path, reason)` for files that were not used (not an image, corrupt, empty, too big).
        converted: `(path, original mode or format)` for files converted to RGB PNG
            (e.g. "L", "RGBA", "P", "CMYK", "I;16", "TIFF", "EXIF rotation").
        duplicates: groups of paths whose files have exactly the same bytes, across classes too.
        warnings: sentences for a person (few images, duplicates in two classes, imbalance).
    """

    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    converted: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """The number of usable images in all classes."""
        return sum(self.counts.values())

    def cross_split_duplicates(self, split: SplitParts) -> list[tuple[str, str]]:
        """Finds exact-duplicate files that landed in two different splits (leakage).

        `split_dataset` keeps duplicates together, so this is empty for its splits; it checks a
        split made any other way.

        Args:
            split: the train/validation/test split to check.

        Returns:
            `(source_a, source_b)` pairs of identical files in different splits, sorted.
        """
        return cross_split_duplicates(split)

    def to_dict(self) -> dict:
        """Returns the report as plain JSON-serialisable data (lists instead of tuples)."""
        data = asdict(self)
        data["skipped"] = [list(item) for item in self.skipped]
        data["converted"] = [list(item) for item in self.converted]
        data["total"] = self.total
        return data

    def summary(self) -> str:
        """Returns one line for a person, e.g. "200 images in 2 classes; 1 skipped; 3 converted"."""
        parts = [f"{self.total} images in {len(self.counts)} classes"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.converted:
            parts.append(f"{len(self.converted)} converted to RGB")
        if self.duplicates:
            copies = sum(len(group) for group in self.duplicates)
            parts.append(f"{copies} files in {len(self.duplicates)} duplicate groups")
        return "; ".join(parts)


def cross_split_duplicates(split: SplitParts) -> list[tuple[str, str]]:
    """Finds identical files (same sha1) that sit in two different splits.

    Args:
        split: a `Split` of `ImageRecord`s.

    Returns:
        Sorted `(source_a, source_b)` pairs, one per pair of copies in different splits.
    """
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)  # sha1 -> [(split, source)]
    for part_name, part in (("train", split.train), ("val", split.val), ("test", split.test)):
        for record in part:
            by_hash[record.sha1].append((part_name, record.source))
    pairs = set()
    for members in by_hash.values():
        for i, (part_a, source_a) in enumerate(members):
            for part_b, source_b in members[i + 1 :]:
                if part_a != part_b:
                    pairs.add(tuple(sorted((source_a, source_b))))
    return sorted(pairs)


def build_warnings(
    counts: dict[str, int], duplicates: list[list[str]], class_of: dict[str, str]
) -> list[str]:
    """Writes the report's warnings for a person.

    Args:
        counts: class name -> usable images.
        duplicates: groups of identical files.
        class_of: source path -> class name, for the files in `duplicates`.

    Returns:
        A list of sentences.
    """
    warnings = []
    for name, n in counts.items():
        if n < FEW_IMAGES_WARNING:
            warnings.append(
                f"Class '{name}' has only {n} images; results on it will be noisy "
                f"(aim for {FEW_IMAGES_WARNING}+ per class)."
            )
    if counts and min(counts.values()) > 0:
        smallest, largest = min(counts.values()), max(counts.values())
        if largest / smallest >= IMBALANCE_RATIO:
            warnings.append(
                f"Classes are imbalanced: {largest} images in the largest and {smallest} in the "
                "smallest; accuracy alone can look good while the small class is missed."
            )
    for group in duplicates:
        classes = sorted({class_of[path] for path in group})
        if len(classes) > 1:
            warnings.append(
                f"The same image is in {len(classes)} classes ({', '.join(classes)}): "
                f"{', '.join(group)}. Its label is contradictory; remove all but one copy."
            )
    return warnings
