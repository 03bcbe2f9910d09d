"""Keeps what visitors leave on disk bounded: unpacked zips, converted images and uploads.

Every unpacked zip, converted image and uploaded file is kept for reuse (the same zip uploaded again
is not unpacked again). Without a bound a shared server fills its disk, so after each new entry the
oldest entries go: first any older than `TRANSFERLAB_UPLOAD_CACHE_DAYS` (default 7), then the least
recently used until the folder is under `TRANSFERLAB_UPLOAD_CACHE_MB` (default 4096 MB). Entries
used in the last `IN_USE_S` seconds are never removed, so a dataset a session is training on stays.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CACHE_MB_ENV = "TRANSFERLAB_UPLOAD_CACHE_MB"
CACHE_DAYS_ENV = "TRANSFERLAB_UPLOAD_CACHE_DAYS"
DEFAULT_CACHE_MB = 4096
DEFAULT_CACHE_DAYS = 7.0
# Touched this recently means a session may be reading it: never removed.
IN_USE_S = 3600.0


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def cache_limits() -> tuple[int, float]:
    """`(max_bytes, max_age_s)` for each visitor cache folder, from the environment."""
    return (int(_env_number(CACHE_MB_ENV, DEFAULT_CACHE_MB) * 2**20),
            _env_number(CACHE_DAYS_ENV, DEFAULT_CACHE_DAYS) * 86400.0)


def touch(path: Path) -> None:
    """Marks an entry as just used (its modification time), so pruning keeps it longest."""
    try:
        os.utime(path)
    except OSError:
        pass


def entry_size(path: Path) -> int:
    """Bytes under `path` (a file or a folder), not following links."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def remove_entry(path: Path) -> None:
    """Removes a file or folder, ignoring one that another process removed first."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(folder: Path, *, max_bytes: int | None = None, max_age_s: float | None = None,
          now: float | None = None) -> list[Path]:
    """Removes the oldest entries of `folder` beyond the age and size limits.

    Args:
        folder: a cache folder whose children are independent entries (files or folders).
        max_bytes: size limit. Defaults to `cache_limits()`.
        max_age_s: age limit in seconds since last use. Defaults to `cache_limits()`.
        now: the time to measure ages from. Defaults to now.

    Returns:
        The entries removed.
    """
    default_bytes, default_age = cache_limits()
    max_bytes = default_bytes if max_bytes is None else max_bytes
    max_age_s = default_age if max_age_s is None else max_age_s
    now = time.time() if now is None else now
    if not folder.is_dir():
        return []
    entries = []
    for child in folder.iterdir():
        try:
            entries.append((child.lstat().st_mtime, child, entry_size(child)))
        except OSError:
            continue
    entries.sort()  # oldest first
    total = sum(size for _, _, size in entries)
    removed = []
    for mtime, child, size in entries:
        age = now - mtime
        if age < IN_USE_S:
            continue
        if age > max_age_s or total > max_bytes:
            remove_entry(child)
            removed.append(child)
            total -= size
    return removed
