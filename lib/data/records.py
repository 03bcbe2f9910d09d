"""What a scanned dataset is: one `ImageRecord` per usable image, gathered in a `DatasetIndex`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from lib.data.report import DataReport


@dataclass(frozen=True)
class ImageRecord:
    """One usable image.

    Attributes:
        path: a file `tf.io.decode_image` reads as the right RGB pixels (the original, or its
            converted RGB PNG in the cache).
        label: the class index into `DatasetIndex.class_names`.
        source: the original file path, for the report and galleries.
        sha1: content hash of the original bytes (duplicates, feature-cache keys).
    """

    path: str
    label: int
    source: str
    sha1: str


@dataclass(frozen=True)
class DatasetIndex:
    """A scanned dataset: class names, usable images and the report of what was found.

    Attributes:
        name: where it came from, e.g. "builtin:faces", "/path/to/folder", "upload.zip".
        class_names: sorted class folder names; a record's label indexes this.
        records: usable images, sorted by `(label, source)`.
        report: the `DataReport`.
    """

    name: str
    class_names: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    # Left out of == and hash(): the report is derived from the files, and it is mutable.
    report: DataReport = field(compare=False)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    def fingerprint(self) -> str:
        """Returns a sha1 over the class names and the (content, label) of every image.

        Two indexes with the same images under the same labels share a fingerprint wherever the
        files live, so it keys the feature cache by data content rather than by path.
        """
        digest = hashlib.sha1()
        digest.update("\n".join(self.class_names).encode("utf-8"))
        for sha1, label in sorted((r.sha1, r.label) for r in self.records):
            digest.update(f"\n{sha1}:{label}".encode())
        return digest.hexdigest()

    def records_by_class(self) -> dict[str, list[ImageRecord]]:
        """Returns class name -> its records (in `records` order)."""
        by_class: dict[str, list[ImageRecord]] = {name: [] for name in self.class_names}
        for record in self.records:
            by_class[self.class_names[record.label]].append(record)
        return by_class


@dataclass(frozen=True)
class Scanned:
    """The outcome of checking one file: a record-to-be, or a reason to skip it."""

    source: str
    class_index: int
    sha1: str = ""
    path: str = ""
    converted_from: str = ""
    skip_reason: str = ""
