"""Dataset sources: a folder of class sub-folders, a zip of one, the built-in set, and TFDS names.

Every source ends up as a folder of class sub-folders that `load_folder` scans, so the checks
(not an image, corrupt, odd colour modes, duplicates, too few images) are written once. The result
is a `DatasetIndex`: class names, one `ImageRecord` per usable image, and a `DataReport`.

Files TensorFlow cannot decode the way `lib.images.open_image` would (grayscale, RGBA, palette,
CMYK, 16-bit, EXIF-rotated, TIFF/WebP/BMP/GIF) are converted once to RGB PNG in
`<cache>/datasets/converted/<sha1>.png`, so the tf.data pipeline only ever sees plain RGB JPEG/PNG
and sees the same pixels a person sees.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from lib.data.builtin import (  # noqa: F401  (re-exported: the contract names them here)
    BUILTIN_DATASETS,
    DEFAULT_DATASET,
    materialise_builtin,
    materialise_tfds,
)
from lib.data.report import DataReport, build_warnings
from lib.errors import TransferLabError
from lib.images import IMAGE_SUFFIXES, MAX_FILE_BYTES, load_image, open_image
from lib.paths import cache_dir

ProgressFn = Callable[[int, int, str], None]

BUILTIN_PREFIX = "builtin:"
TFDS_PREFIX = "tfds:"
# A class needs two images: one to train on and one to validate on.
MIN_IMAGES_PER_CLASS = 2
# Report progress every this many files while scanning.
PROGRESS_EVERY = 25
# Decoding is mostly C code that releases the GIL, so a few threads use both cores.
SCAN_THREADS = 4
# A folder with more files than this is almost surely the wrong folder (a home folder, a disk).
MAX_FOLDER_FILES = 500_000
# Zip limits: generous for a real photo set, small enough that a zip bomb cannot fill the disk.
MAX_ZIP_FILES = 50_000
MAX_ZIP_BYTES = 2 * 1024**3
ZIP_CHUNK = 1024 * 1024
# Folders and files that are never data: macOS resource forks, hidden files, thumbnails caches.
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
# The only formats that go to tf.io.decode_image untouched (when 8-bit RGB and upright).
PASSTHROUGH_FORMATS = {"JPEG", "PNG"}
EXIF_ORIENTATION = 0x0112


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
class _Scanned:
    """The outcome of checking one file: a record-to-be, or a reason to skip it."""

    source: str
    class_index: int
    sha1: str = ""
    path: str = ""
    converted_from: str = ""
    skip_reason: str = ""


def load_dataset(spec: str, *, on_progress: ProgressFn | None = None) -> DatasetIndex:
    """Loads a dataset from any source.

    Args:
        spec: a folder of class sub-folders, a path to a `.zip`, `"builtin:NAME"` (see
            `BUILTIN_DATASETS`) or `"tfds:NAME"` (e.g. `tfds:tf_flowers`, needs the network once).
        on_progress: optional `fn(done, total, message)` called while scanning.

    Returns:
        The `DatasetIndex`.

    Raises:
        TransferLabError: the source does not exist or is not a usable dataset.
    """
    spec = str(spec).strip()
    if not spec:
        raise TransferLabError(
            "No dataset given. Use a folder of class sub-folders, a .zip, or builtin:faces."
        )
    if spec.startswith(BUILTIN_PREFIX):
        folder = materialise_builtin(spec[len(BUILTIN_PREFIX) :])
        return load_folder(folder, name=spec, on_progress=on_progress)
    if spec.startswith(TFDS_PREFIX):
        folder = materialise_tfds(spec[len(TFDS_PREFIX) :], on_progress=on_progress)
        return load_folder(folder, name=spec, on_progress=on_progress)
    path = Path(spec).expanduser()
    if path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        return load_zip(path, name=path.name, on_progress=on_progress)
    return load_folder(path, on_progress=on_progress)


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
) -> list[_Scanned]:
    """Checks every file (in threads), reporting progress.

    Args:
        files: `(path, class_index)` pairs.
        on_progress: optional `fn(done, total, message)`.

    Returns:
        One `_Scanned` per file, in the input order.
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


def scan_file(path: Path, class_index: int) -> _Scanned:
    """Checks one file: is it a usable image, and does it need converting?

    Args:
        path: the file.
        class_index: its class.

    Returns:
        A `_Scanned` with `path` and `sha1`, or with `skip_reason`.
    """
    source = str(path)
    skip = lambda reason: _Scanned(source, class_index, skip_reason=reason)  # noqa: E731
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
        return _Scanned(source, class_index, sha1=sha1, path=source)
    converted = cache_dir() / "datasets" / "converted" / f"{sha1}.png"
    if not converted.is_file():
        write_png_atomic(rgb, converted)
    return _Scanned(source, class_index, sha1=sha1, path=str(converted), converted_from=needs)


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


def write_png_atomic(img: Image.Image, path: Path) -> None:
    """Saves a PIL image as PNG so that readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_index(name: str, class_names: tuple[str, ...], scanned: list[_Scanned]) -> DatasetIndex:
    """Builds the index and report from scanned files, and rejects unusable datasets.

    Args:
        name: the dataset's display name.
        class_names: sorted class names.
        scanned: one `_Scanned` per file.

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


# --- zip files -------------------------------------------------------------------------------


def load_zip(
    data: bytes | str | Path, name: str = "upload.zip", *, on_progress: ProgressFn | None = None
) -> DatasetIndex:
    """Loads a zip of class sub-folders (optionally inside one top-level folder).

    The zip is extracted once into `<cache>/datasets/zip/<sha1 of the zip>/`, refusing unsafe
    entries (absolute paths, `..`) and zip bombs (over `MAX_ZIP_FILES` files or `MAX_ZIP_BYTES`
    uncompressed). `__MACOSX` and hidden files are ignored.

    Args:
        data: the zip's bytes (a browser upload) or its path.
        name: the display name. Defaults to "upload.zip"; a path's file name when a path is given.
        on_progress: optional `fn(done, total, message)`.

    Returns:
        The `DatasetIndex`.

    Raises:
        TransferLabError: not a zip, corrupt, empty, unsafe, too big, or no class folders inside.
    """
    if isinstance(data, str | Path):
        path = Path(data).expanduser()
        if not path.is_file():
            raise TransferLabError(f"Zip file not found: {path}")
        name = name if name != "upload.zip" else path.name
        source: bytes | Path = path
        digest = file_sha1(path)
        empty = path.stat().st_size == 0
    else:
        source, digest, empty = data, hashlib.sha1(data).hexdigest(), not data
    if empty:
        raise TransferLabError(f"{name} is empty (0 bytes).")
    target = cache_dir() / "datasets" / "zip" / digest
    if not target.is_dir():
        extract_zip(source, name, target, on_progress=on_progress)
    return load_folder(dataset_root(target, name), name=name, on_progress=on_progress)


def file_sha1(path: Path) -> str:
    """Hashes a file in chunks (zips can be bigger than memory should hold)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(ZIP_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_zip(
    data: bytes | Path, name: str, target: Path, *, on_progress: ProgressFn | None = None
) -> None:
    """Safely extracts a zip (bytes or a path) into `target` (via a temporary folder, then one rename).

    Raises:
        TransferLabError: the zip is not a zip, corrupt, empty, unsafe or too big.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as e:
        raise TransferLabError(f"{name} is not a zip file, or it is corrupt ({e}).") from e
    with archive:
        for member in archive.infolist():  # refuse zip-slip before anything else, even in junk
            safe_member_path(member.filename, name)
        members = [m for m in archive.infolist() if not m.is_dir() and not is_ignored_member(m)]
        check_members(members, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            written = 0
            for done, member in enumerate(members, start=1):
                written = extract_member(archive, member, tmp, name, written)
                if on_progress and (done % PROGRESS_EVERY == 0 or done == len(members)):
                    on_progress(done, len(members), f"Unzipped {done} of {len(members)} files")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if target.is_dir():  # another session extracted the same zip at the same time
                return
            raise


def is_ignored_member(member: zipfile.ZipInfo) -> bool:
    """True for zip entries that are never data: `__MACOSX/`, hidden files, symlinks."""
    parts = PurePosixPath(member.filename.replace("\\", "/")).parts
    is_link = stat.S_ISLNK(member.external_attr >> 16)
    return is_link or any(is_ignored(part) for part in parts)


def check_members(members: list[zipfile.ZipInfo], name: str) -> None:
    """Refuses empty zips and zip bombs (counted over the entries that will be extracted).

    Raises:
        TransferLabError: with the offending entry or number.
    """
    if not members:
        raise TransferLabError(f"{name} is empty: it holds no files (hidden files are ignored).")
    if len(members) > MAX_ZIP_FILES:
        raise TransferLabError(
            f"{name} holds {len(members):,} files; the limit is {MAX_ZIP_FILES:,}."
        )
    declared = sum(m.file_size for m in members)
    if declared > MAX_ZIP_BYTES:
        raise TransferLabError(
            f"{name} unpacks to {declared / 2**30:.1f} GB; the limit is {MAX_ZIP_BYTES / 2**30:.0f} GB."
        )


def safe_member_path(filename: str, name: str) -> PurePosixPath:
    """Returns a zip entry's relative path, refusing absolute paths and `..` (zip-slip).

    Raises:
        TransferLabError: the entry would land outside the extraction folder.
    """
    posix = filename.replace("\\", "/")
    rel = PurePosixPath(posix)
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise TransferLabError(
            f"{name} contains an unsafe path '{filename}' that points outside the archive; "
            "refusing to unpack it."
        )
    return rel


def extract_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path, name: str, written: int
) -> int:
    """Copies one entry under `root`, counting real bytes (declared sizes can lie).

    Returns:
        The running total of bytes written.

    Raises:
        TransferLabError: the entry is corrupt, or the total passes `MAX_ZIP_BYTES`.
    """
    dest = root.joinpath(*safe_member_path(member.filename, name).parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(ZIP_CHUNK):
                written += len(chunk)
                if written > MAX_ZIP_BYTES:
                    raise TransferLabError(
                        f"{name} unpacks to more than {MAX_ZIP_BYTES / 2**30:.0f} GB; refusing it."
                    )
                out.write(chunk)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
    ) as e:
        raise TransferLabError(
            f"{name} is corrupt: '{member.filename}' cannot be read ({e})."
        ) from e
    except NotImplementedError as e:
        raise TransferLabError(
            f"{name} uses a compression method Python cannot read for '{member.filename}' ({e}); "
            "re-create it with standard zip (deflate)."
        ) from e
    except RuntimeError as e:  # encrypted entries
        raise TransferLabError(f"{name} is password-protected; upload an unencrypted zip.") from e
    return written


def dataset_root(extracted: Path, name: str) -> Path:
    """Finds the folder of class sub-folders in an extracted zip.

    A zip may hold the class folders at its top, or inside one top-level folder (what zipping a
    folder gives). A single top-level folder that holds only files is one class, not a wrapper.

    Raises:
        TransferLabError: the zip has no folders at all.
    """
    entries = [p for p in extracted.iterdir() if not is_ignored(p.name)]
    folders = [p for p in entries if p.is_dir()]
    if not folders:
        raise TransferLabError(
            f"{name} has no class folders: put each class's images in its own folder "
            "(cats/*.jpg, dogs/*.jpg) and zip those folders, or the one folder holding them."
        )
    if len(entries) == 1 and any(
        p.is_dir() and not is_ignored(p.name) for p in folders[0].iterdir()
    ):
        return folders[0]
    return extracted
