"""Classes a class gathers in the app (webcam photos, dropped files), saved as a dataset folder.

As Teachable Machine lets a class do: name a few classes, fill each with photos, train. The Data
page keeps the photos of one visitor's session in memory (`dict[class name, list[Photo]]`, in the
order the classes were added); the functions here check and change that mapping and save it.

Every photo goes through `lib.images.open_image`, like any upload (corrupt, huge or odd files
raise `TransferLabError`), and is kept upright, in RGB, as a JPEG whose longest side is at most
`MAX_SIDE`: that bounds a session's memory, and drops EXIF metadata (a phone photo's location) from
what is saved and downloaded. Class names follow the folder scan's rule
(`lib.data.scan.class_name_problem`) plus what a folder name needs.

A saved set is an upload: `<cache>/uploads/<sha1 of its content>/<set name>/<class>/<nnn>.jpg`,
written atomically. Changed photos make a new folder, so the shared dataset cache (keyed by the
path) never serves an old version, and no session can change a set another session is using. The
folder is a normal folder of class folders: `python -m lib train --data FOLDER`, or the zip
(`zip_dataset_folder`) with `--data SET.zip`.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lib.data.housekeeping import prune, touch
from lib.data.scan import IGNORED_NAMES, class_name_problem
from lib.errors import TransferLabError
from lib.images import open_image
from lib.storage import atomic_write_folder, cache_dir
from lib.uploads import DIGEST_CHARS, UPLOADS_DIR

# A classroom set: a dozen classes of a couple of hundred photos keeps a session under ~100 MB.
MAX_CLASSES = 12
MAX_PHOTOS_PER_CLASS = 200
# Longest side of a kept photo: above every backbone's input size (224-300 px), small in memory.
MAX_SIDE = 512
THUMBNAIL_SIDE = 96
JPEG_QUALITY = 90
# Longest class or set name, in UTF-8 bytes (file systems refuse names over 255).
MAX_NAME_BYTES = 100
DEFAULT_SET_NAME = "our-classes"
# One photo each to train, validate and test on: the default split (`TrainConfig`) has a test share,
# so the scan's own minimum (2) would save a set that cannot be split.
MIN_PHOTOS_PER_CLASS = 3
CAMERA_SOURCE = "webcam"

Classes = dict[str, list["Photo"]]


@dataclass(frozen=True)
class Photo:
    """One gathered photo.

    Attributes:
        jpeg: the photo, upright RGB, longest side at most `MAX_SIDE`, as JPEG bytes.
        thumbnail: the same, longest side `THUMBNAIL_SIDE`, as JPEG bytes.
        sha1: hex SHA-1 of `jpeg`.
        source: where it came from: the dropped file's name, or `CAMERA_SOURCE`.
    """

    jpeg: bytes
    thumbnail: bytes
    sha1: str
    source: str


def check_name(name: str, what: str = "class") -> str:
    """Returns `name` stripped when it can name a class (or a set) folder.

    The scan's rule (no control or bidirectional-override characters, not blank) and what a
    folder name needs: no '/' or '\\', not '.' or '..', not hidden (a leading '.') or a name the
    scan ignores, at most `MAX_NAME_BYTES` bytes. ':' and markdown characters are allowed.

    Args:
        name: what the person typed.
        what: "class" or "set", for the message. Defaults to "class".

    Returns:
        The name without surrounding spaces.

    Raises:
        TransferLabError: the name cannot be used; the message echoes it.
    """
    text = str(name).strip()
    problem = class_name_problem(text)
    if not problem and ("/" in text or "\\" in text):
        problem = "holds '/' or '\\', which would make it a folder inside a folder"
    elif not problem and (text.startswith(".") or text in IGNORED_NAMES):
        problem = "would be a hidden or ignored folder (it starts with '.' or is a system name)"
    elif not problem and len(text.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise TransferLabError(f"Received the {what} name {name!r}, which {problem}; use plain "
                               "letters, digits, spaces, '-' or '_'.")
    return text


def same_name(a: str, b: str) -> bool:
    """True when two names would be one folder on a case-insensitive disk (or after unzipping)."""
    return unicodedata.normalize("NFC", a).casefold() == unicodedata.normalize("NFC", b).casefold()


def add_class(classes: Classes, name: str) -> str:
    """Adds an empty class to `classes` (in place).

    Args:
        classes: the session's classes.
        name: the new class's name, as typed.

    Returns:
        The name as kept (stripped).

    Raises:
        TransferLabError: a bad name, one already there (ignoring case), or `MAX_CLASSES` reached.
    """
    text = check_name(name)
    taken = [c for c in classes if same_name(c, text)]
    if taken:
        raise TransferLabError(f"Received the class name {text!r}, but there is already a class "
                               f"{taken[0]!r}; choose another name.")
    if len(classes) >= MAX_CLASSES:
        raise TransferLabError(f"A set holds at most {MAX_CLASSES} classes; remove one first.")
    classes[text] = []
    return text


def remove_class(classes: Classes, name: str) -> None:
    """Removes a class and its photos (in place); an unknown name changes nothing."""
    classes.pop(name, None)


def make_photo(data: bytes, source: str) -> Photo:
    """Checks an image like any upload and keeps it upright, RGB, at most `MAX_SIDE` px.

    Args:
        data: the file's bytes (a webcam JPEG or a dropped file).
        source: its name, for messages and the photo's `source`.

    Returns:
        The `Photo`.

    Raises:
        TransferLabError: not an image, corrupt, truncated, empty, or too large; the message names
            the file.
    """
    try:
        rgb, _ = open_image(bytes(data))
    except TransferLabError as e:
        message = str(e).replace("The uploaded image", f"'{source}'").replace(
            "uploaded image", f"'{source}'")
        raise TransferLabError(message) from e
    jpeg = encode_jpeg(rgb, MAX_SIDE)
    return Photo(jpeg=jpeg, thumbnail=encode_jpeg(rgb, THUMBNAIL_SIDE),
                 sha1=hashlib.sha1(jpeg).hexdigest(), source=str(source))


def encode_jpeg(img: Image.Image, side: int) -> bytes:
    """`img` shrunk (never enlarged) so its longest side is at most `side`, as JPEG bytes."""
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def add_photos(classes: Classes, name: str, files: list[tuple[str, bytes]]) -> list[str]:
    """Adds images to one class (in place); each bad file is reported, none stops the rest.

    Args:
        classes: the session's classes.
        name: the class to fill.
        files: `(file name, bytes)` pairs, e.g. the files dropped at once or one webcam shot.

    Returns:
        One message per file that was not added (unreadable, or the class is full).

    Raises:
        TransferLabError: no class called `name`.
    """
    if name not in classes:
        raise TransferLabError(f"Received the class {name!r}, which is not in this set; add it first.")
    problems = []
    for source, data in files:
        if len(classes[name]) >= MAX_PHOTOS_PER_CLASS:
            problems.append(f"'{source}' was not added: a class holds at most "
                            f"{MAX_PHOTOS_PER_CLASS} photos.")
            continue
        try:
            classes[name].append(make_photo(data, source))
        except TransferLabError as e:
            problems.append(str(e))
    return problems


def remove_photo(classes: Classes, name: str, index: int) -> None:
    """Removes the `index`-th photo of class `name` (in place); an unknown one changes nothing."""
    photos = classes.get(name, [])
    if 0 <= index < len(photos):
        del photos[index]


def check_ready(classes: Classes) -> None:
    """Raises `TransferLabError` unless the set can train: 2+ classes, each with
    `MIN_PHOTOS_PER_CLASS`+ photos."""
    if len(classes) < 2:
        raise TransferLabError(f"A classifier needs at least 2 classes; this set has {len(classes)}. "
                               "Add another class.")
    short = {name: len(photos) for name, photos in classes.items() if len(photos) < MIN_PHOTOS_PER_CLASS}
    if short:
        listed = ", ".join(f"{name!r} has {n}" for name, n in short.items())
        raise TransferLabError(f"Every class needs at least {MIN_PHOTOS_PER_CLASS} photos "
                               f"(to train on, to check with, to test on), but {listed}.")


def set_digest(classes: Classes) -> str:
    """A hash of the classes' names and photos (order of the photos included)."""
    digest = hashlib.sha1()
    for name in sorted(classes):
        digest.update(name.encode("utf-8") + b"\0")
        for photo in classes[name]:
            digest.update(photo.sha1.encode() + b"\0")
    return digest.hexdigest()


def gathered_folder(classes: Classes, set_name: str = DEFAULT_SET_NAME) -> Path:
    """Where `save_gathered` keeps this content: `<cache>/uploads/<digest>/<set name>`."""
    return cache_dir() / UPLOADS_DIR / set_digest(classes)[:DIGEST_CHARS] / check_name(set_name, "set")


def save_gathered(classes: Classes, set_name: str = DEFAULT_SET_NAME) -> Path:
    """Saves the classes as a folder of class folders, atomically, in the uploads area.

    The same content saved twice (by anyone) is the same folder, written once.

    Args:
        classes: class name -> photos, as gathered.
        set_name: the folder's (and the zip's) name. Defaults to `DEFAULT_SET_NAME`.

    Returns:
        The folder, usable as a dataset spec (`lib.data.load_dataset(str(folder))`).

    Raises:
        TransferLabError: fewer than 2 classes, a class with fewer than `MIN_PHOTOS_PER_CLASS`
            photos, a bad name.
    """
    check_ready(classes)
    for name in classes:
        check_name(name)
    target = gathered_folder(classes, set_name)
    if target.is_dir():
        touch(target.parent)
        return target

    def write(tmp: Path) -> None:
        for name, photos in classes.items():
            folder = tmp / name
            folder.mkdir()
            for number, photo in enumerate(photos, start=1):
                (folder / f"{number:03d}.jpg").write_bytes(photo.jpeg)

    atomic_write_folder(target, write)
    # Keep the uploads area bounded like the other visitor caches (entries in use are kept).
    prune(cache_dir() / UPLOADS_DIR)
    return target


def is_gathered(spec: str | None) -> bool:
    """True when a dataset spec is a set saved by `save_gathered` (a folder in the uploads area)."""
    if not spec:
        return False
    path = Path(str(spec))
    try:
        uploads = (cache_dir() / UPLOADS_DIR).resolve()
        return path.is_dir() and path.resolve().parent.parent == uploads
    except (OSError, RuntimeError):
        return False


def zip_dataset_folder(folder: str | Path) -> bytes:
    """A folder of class folders as zip bytes, every entry under `<folder name>/`.

    The zip loads back as a dataset (`--data SET.zip`, or the Data page's "Upload a zip").
    JPEGs are stored, not compressed again.

    Raises:
        TransferLabError: the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TransferLabError(f"Received the folder {str(folder)!r}, which does not exist.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()

