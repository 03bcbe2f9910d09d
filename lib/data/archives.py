"""Zip archives of class folders, unpacked safely: no zip-slip, no bombs, no links, no odd names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from lib.data.housekeeping import prune, remove_entry, touch
from lib.data.records import DatasetIndex
from lib.data.scan import PROGRESS_EVERY, is_ignored, load_folder
from lib.errors import TransferLabError
from lib.progress import ProgressFn
from lib.storage import cache_dir

# Zip limits: generous for a real photo set, small enough that a zip bomb cannot fill the disk.
MAX_ZIP_FILES = 50_000
MAX_ZIP_BYTES = 2 * 1024**3
ZIP_CHUNK = 1024 * 1024
DRIVE = re.compile(r"^[A-Za-z]:")
# Longest file or folder name most file systems accept (bytes, UTF-8); longer entries are skipped.
MAX_NAME_BYTES = 255
# Entries skipped while unpacking, kept beside the files so a cached extraction reports them too.
SKIPPED_FILE = ".transferlab-skipped.json"
SHOWN_NAME_CHARS = 60


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
    fresh = not target.is_dir()
    if fresh:
        extract_zip(source, name, target, on_progress=on_progress)
    try:
        index = load_folder(dataset_root(target, name), name=name, on_progress=on_progress)
    except TransferLabError:
        # A zip that is not a usable dataset is not kept: its files would only fill the disk.
        remove_entry(target)
        raise
    touch(target)
    if fresh:
        prune(target.parent)
        prune(cache_dir() / "datasets" / "converted")
    index.report.skipped.extend(read_skipped(target))
    return index


def read_skipped(target: Path) -> list[tuple[str, str]]:
    """The `(entry, reason)` pairs skipped when `target` was unpacked."""
    try:
        return [tuple(pair) for pair in json.loads((target / SKIPPED_FILE).read_text())]
    except (OSError, ValueError):
        return []


def unusable_name_reason(filename: str) -> str:
    """Why an entry's name cannot be a file here ("" when it can): a part over 255 bytes, a NUL."""
    for part in PurePosixPath(filename.replace("\\", "/")).parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            return f"name longer than {MAX_NAME_BYTES} bytes, which file systems refuse"
        if "\x00" in part:
            return "name holds a NUL character"
    return ""


def shown_name(filename: str) -> str:
    """An entry name short enough to show in a table."""
    return filename if len(filename) <= SHOWN_NAME_CHARS else filename[: SHOWN_NAME_CHARS - 1] + "…"


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
        skipped = [(f"{name}: {shown_name(m.filename)}", reason) for m in members
                   if (reason := unusable_name_reason(m.filename))]
        members = [m for m in members if not unusable_name_reason(m.filename)]
        check_members(members, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            if skipped:
                (tmp / SKIPPED_FILE).write_text(json.dumps(skipped))
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
    # A drive letter ("C:") is absolute on Windows; a ':' elsewhere is an ordinary character here.
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and DRIVE.match(rel.parts[0])):
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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
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
