"""The folder scan: class sub-folders, every file checked once, odd images converted to RGB PNG.

Every source ends up as a folder of class sub-folders that `load_folder` scans, so the checks
(not an image, corrupt, odd colour modes, duplicates, too few images) are written once.

Files TensorFlow cannot decode the way `lib.images.open_image` would (grayscale, RGBA, palette,
CMYK, 16-bit, EXIF-rotated, TIFF/WebP/BMP/GIF) are converted once to RGB PNG in
`<cache>/datasets/converted/<sha1>.png`, so the tf.data pipeline only ever sees plain RGB JPEG/PNG
and sees the same pixels a person sees.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.records import DatasetIndex, ImageRecord, Scanned
from lib.data.report import DataReport, build_warnings
from lib.errors import TransferLabError
from lib.images import IMAGE_SUFFIXES, MAX_FILE_BYTES, load_image, open_image
from lib.progress import ProgressFn
from lib.storage import atomic_save_png, cache_dir

# A class needs two images: one to train on and one to validate on.
MIN_IMAGES_PER_CLASS = 2
# Report progress every this many files while scanning.
PROGRESS_EVERY = 25
# Decoding is mostly C code that releases the GIL, so a few threads use both cores.
SCAN_THREADS = 4
# A folder with more files than this is almost surely the wrong folder (a home folder, a disk).
MAX_FOLDER_FILES = 500_000
# Folders and files that are never data: macOS resource forks, hidden files, thumbnails caches.
# Format characters that are harmless in names (joiners used by some scripts and emoji).
ALLOWED_FORMAT = {"\u200c", "\u200d"}
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
# The only formats that go to tf.io.decode_image untouched (when 8-bit RGB and upright).
PASSTHROUGH_FORMATS = {"JPEG", "PNG"}
EXIF_ORIENTATION = 0x0112



def load_folder(
    root: str | Path, *, name: str | None = None, on_progress: ProgressFn | None = None
) -> DatasetIndex:
    """Scans a folder of class sub-folders, as `keras.utils.image_dataset_from_directory` reads.

    Each sub-folder is a class (sorted by name); its images may sit in nested folders. Hidden files
    and folders are ignored.

    Args:
        root: the dataset folder.
        name: the dataset's display name. Defaults to the folder path.
        on_progress: optional `fn(done, total, message)`.

    Returns:
        The `DatasetIndex`.

    Raises:
        TransferLabError: the folder is missing, has no class sub-folders, has only one class, or
            a class with fewer than 2 usable images.
    """
    name = name or str(root)
    # Absolute record paths stay valid whatever the working directory of a later reader.
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise TransferLabError(f"Dataset folder not found: {root}")
    if not root.is_dir():
        raise TransferLabError(
            f"{root} is a file, not a folder; give a folder of class sub-folders or a .zip."
        )
    class_names = find_class_folders(root, name)
    files = [
        (path, label)
        for label, class_name in enumerate(class_names)
        for path in list_files(root / class_name)
    ]
    scanned = scan_files(files, on_progress=on_progress)
    return build_index(name, class_names, scanned)


def find_class_folders(root: Path, name: str) -> tuple[str, ...]:
    """Returns the sorted names of `root`'s visible sub-folders.

    Args:
        root: the dataset folder.
        name: the dataset's display name, for messages.

    Raises:
        TransferLabError: there are none, or only one.
    """
    names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not is_ignored(p.name)))
    for class_name in names:
        check_class_name(class_name, name)
    if not names:
        raise TransferLabError(
            f"{name} has no class sub-folders. Put each class's images in its own folder, "
            "e.g. data/cats/*.jpg and data/dogs/*.jpg."
        )
    if len(names) == 1:
        raise TransferLabError(
            f"{name} has only one class folder ('{names[0]}'); a classifier needs at least 2 classes."
        )
    return names


def check_class_name(class_name: str, dataset: str) -> None:
    """Refuses class names that would break `labels.txt` or mislead a reader.

    A class name becomes a line of `labels.txt` and text on every page, so control characters (a
    newline writes two labels for one class) and bidirectional overrides (which show a name
    reversed) are refused, with the name written out so the person can find the folder.

    Raises:
        TransferLabError: the name holds such a character.
    """
    problem = class_name_problem(class_name)
    if problem:
        raise TransferLabError(
            f"{dataset} has a class folder named {class_name!r}, which {problem}; rename it with "
            "plain letters, digits, spaces, '-' or '_'."
        )


def class_name_problem(class_name: str) -> str:
    """Why `class_name` cannot be a class ("" when it can), e.g. "holds U+000A control".

    The one rule for class names, whether they come from a folder, a zip or the Data page's
    "Gather classes": no control or format characters (joiners aside), not blank. Markdown and
    ':' are allowed; pages show names with `lib.ui.text.plain`.
    """
    bad = [c for c in class_name if unicodedata.category(c) in ("Cc", "Cf") and c not in ALLOWED_FORMAT]
    if bad:
        what = ", ".join(sorted({f"U+{ord(c):04X} {unicodedata.name(c, 'control')}" for c in bad}))
        return f"holds {what}"
    return "" if class_name.strip() else "is blank"


def is_ignored(name: str) -> bool:
    """True for names that are never data: hidden files, `__MACOSX`, Thumbs.db."""
    return name.startswith(".") or name in IGNORED_NAMES


def list_files(folder: Path, limit: int | None = None) -> list[Path]:
    """Lists every visible file under `folder`, recursively, in sorted order.

    Args:
        folder: the folder to walk.
        limit: the most files accepted. Defaults to `MAX_FOLDER_FILES`.

    Raises:
        TransferLabError: more than `limit` files (probably the wrong folder, e.g. a home folder).
    """
    limit = MAX_FOLDER_FILES if limit is None else limit
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not is_ignored(f))
        if len(found) > limit:
            raise TransferLabError(
                f"{folder} holds more than {limit:,} files; is this the right folder? "
                "Point at a folder whose sub-folders are the classes."
            )
    return found


def scan_files(
    files: list[tuple[Path, int]], *, on_progress: ProgressFn | None = None
) -> list[Scanned]:
    """Checks every file (in threads), reporting progress.

    Args:
        files: `(path, class_index)` pairs.
        on_progress: optional `fn(done, total, message)`.

    Returns:
        One `Scanned` per file, in the input order.
    """
    total = len(files)
    if on_progress:
        on_progress(0, total, f"Checking {total} files")
    results = []
    with ThreadPoolExecutor(max_workers=SCAN_THREADS) as pool:
        for done, result in enumerate(pool.map(lambda f: scan_file(*f), files), start=1):
            results.append(result)
            if on_progress and (done % PROGRESS_EVERY == 0 or done == total):
                on_progress(done, total, f"Checked {done} of {total} files")
    return results


def scan_file(path: Path, class_index: int) -> Scanned:
    """Checks one file: is it a usable image, and does it need converting?

    Args:
        path: the file.
        class_index: its class.

    Returns:
        A `Scanned` with `path` and `sha1`, or with `skip_reason`.
    """
    source = str(path)
    skip = lambda reason: Scanned(source, class_index, skip_reason=reason)  # noqa: E731
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return skip(f"not an image file ('{path.suffix or 'no extension'}')")
    try:
        size = path.stat().st_size
        if size == 0:
            return skip("empty file (0 bytes)")
        if size > MAX_FILE_BYTES:
            return skip(
                f"too big ({size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)"
            )
        data = path.read_bytes()
    except OSError as e:  # broken links, permissions
        return skip(f"cannot be read ({e.strerror or e})")
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        # Full decode: catches truncated and corrupt files, and converts odd modes to RGB.
        rgb, info = open_image(data)
    except TransferLabError as e:
        return skip(
            str(e).replace("The uploaded image", "The file").replace("uploaded image", "file")
        )
    except Exception as e:  # crafted files can trip PIL in odd ways; one file must not stop a scan
        return skip(f"unreadable image ({type(e).__name__}: {e})")
    try:
        needs = conversion_reason(data, info.mode)
    except Exception:  # unreadable metadata: re-encoding what open_image decoded is always safe
        needs = "unreadable metadata"
    if not needs:
        return Scanned(source, class_index, sha1=sha1, path=source)
    converted = cache_dir() / "datasets" / "converted" / f"{sha1}.png"
    if not converted.is_file():
        atomic_save_png(rgb, converted)
    return Scanned(source, class_index, sha1=sha1, path=str(converted), converted_from=needs)


def conversion_reason(data: bytes, mode: str) -> str:
    """Says why a file must be converted before TensorFlow reads it, or "" when it need not.

    TensorFlow's decoders ignore EXIF rotation and read only some formats and bit depths, so
    anything but an upright 8-bit RGB JPEG/PNG is converted to match what `open_image` shows.

    Args:
        data: the file's bytes.
        mode: the PIL mode of the original image.

    Returns:
        The original mode or format (e.g. "L", "RGBA", "CMYK", "I;16", "TIFF", "EXIF rotation"),
        or "" for a file that can be used as it is.
    """
    if mode != "RGB":
        return mode
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "unknown"
        if fmt not in PASSTHROUGH_FORMATS:
            return fmt
        if fmt == "PNG" and png_bit_depth(data) != 8:
            return f"PNG {png_bit_depth(data)}-bit"
        if getattr(img, "n_frames", 1) > 1:
            return f"animated {fmt}"
        if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            return "EXIF rotation"
    return ""


def png_bit_depth(data: bytes) -> int:
    """Reads the bit depth from a PNG's IHDR chunk (byte 24)."""
    return data[24] if len(data) > 24 else 8


def build_index(name: str, class_names: tuple[str, ...], scanned: list[Scanned]) -> DatasetIndex:
    """Builds the index and report from scanned files, and rejects unusable datasets.

    Args:
        name: the dataset's display name.
        class_names: sorted class names.
        scanned: one `Scanned` per file.

    Returns:
        The `DatasetIndex`.

    Raises:
        TransferLabError: a class has fewer than `MIN_IMAGES_PER_CLASS` usable images.
    """
    usable = [s for s in scanned if not s.skip_reason]
    records = tuple(
        sorted(
            (
                ImageRecord(path=s.path, label=s.class_index, source=s.source, sha1=s.sha1)
                for s in usable
            ),
            key=lambda r: (r.label, r.source),
        )
    )
    counts = {c: 0 for c in class_names}
    for record in records:
        counts[class_names[record.label]] += 1
    too_few = {c: n for c, n in counts.items() if n < MIN_IMAGES_PER_CLASS}
    if too_few:
        listed = ", ".join(f"'{c}' has {n}" for c, n in too_few.items())
        skipped = sum(1 for s in scanned if s.skip_reason)
        raise TransferLabError(
            f"Every class needs at least {MIN_IMAGES_PER_CLASS} usable images, but in {name} {listed}"
            + (f" ({skipped} files were skipped as unreadable or not images)." if skipped else ".")
        )
    duplicates = find_duplicates(records)
    class_of = {r.source: class_names[r.label] for r in records}
    report = DataReport(
        counts=counts,
        skipped=[(s.source, s.skip_reason) for s in scanned if s.skip_reason],
        converted=[(s.source, s.converted_from) for s in usable if s.converted_from],
        duplicates=duplicates,
        warnings=build_warnings(counts, duplicates, class_of),
    )
    return DatasetIndex(name=name, class_names=class_names, records=records, report=report)


def find_duplicates(records: tuple[ImageRecord, ...]) -> list[list[str]]:
    """Groups records whose original files have the same bytes.

    Returns:
        Groups (2+ sources each, sorted), sorted by their first source.
    """
    by_hash: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_hash[record.sha1].append(record.source)
    return sorted(sorted(group) for group in by_hash.values() if len(group) > 1)


def sample_images(
    index: DatasetIndex, per_class: int = 6, size: int = 64, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Picks a few images per class, resized and centre-cropped, for galleries.

    Args:
        index: the dataset.
        per_class: images per class (fewer when a class is smaller). Defaults to 6.
        size: output side in pixels. Defaults to 64.
        seed: which images. Defaults to 0.

    Returns:
        class name -> list of float32 (size, size, 3) pixel arrays.
    """
    rng = np.random.default_rng(seed)
    samples = {}
    for name, records in index.records_by_class().items():
        chosen = sorted(rng.choice(len(records), min(per_class, len(records)), replace=False))
        samples[name] = [load_image(records[i].path, size) for i in chosen]
    return samples
