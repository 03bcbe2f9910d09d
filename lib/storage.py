"""Where TransferLab keeps its files, and the one way it writes them: atomically.

Readers (another session, another process, a crash) see the old file or the new one, never half of
it: every writer here writes a temporary file beside the target and renames it over the target.
`atomic_write` takes a function that writes to an open file; `atomic_write_path` one that writes to a
path (Keras insists on saving by path, with its own suffix).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from lib.errors import TransferLabError

CACHE_ENV = "TRANSFERLAB_CACHE"
RUNS_ENV = "TRANSFERLAB_RUNS"


def cache_dir() -> Path:
    """Returns the cache root (`TRANSFERLAB_CACHE`, default `~/.cache/transferlab`), created.

    Raises:
        TransferLabError: the folder cannot be created (read-only, not a folder, no permission).
    """
    return _usable_folder(Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "transferlab"),
                          CACHE_ENV)


def runs_dir() -> Path:
    """Returns the folder of runs shared by every session (`TRANSFERLAB_RUNS`, default `<cache>/runs`).

    Raises:
        TransferLabError: the folder cannot be created.
    """
    return _usable_folder(Path(os.environ.get(RUNS_ENV) or cache_dir() / "runs"), RUNS_ENV)


def _usable_folder(root: Path, env: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TransferLabError(
            f"TransferLab cannot use the folder {root} ({e.strerror or e}); point {env} at a "
            "writable folder."
        ) from e
    return root


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Writes a file through `write(f)` on an open binary file, then renames it into place.

    Args:
        path: the target; parent folders are created.
        write: writes the whole content to the file object it gets.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_path(path: Path, save: Callable[[Path], None], suffix: str) -> None:
    """Writes a file through `save(tmp_path)` for writers that need a path ending in `suffix`.

    Args:
        path: the target; parent folders are created.
        save: writes the whole content to the path it gets.
        suffix: what the temporary path must end with (e.g. ".keras", ".weights.h5").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        save(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never half of it."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_weights(model, path: Path) -> None:
    """Saves a Keras model's weights (`.weights.h5`) atomically."""
    atomic_write_path(path, model.save_weights, ".weights.h5")


def atomic_save_model(model, path: Path) -> None:
    """Saves a whole Keras model (`.keras`) atomically."""
    atomic_write_path(path, model.save, ".keras")


def atomic_save_png(img, path: Path) -> None:
    """Saves a PIL image as PNG atomically."""
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def atomic_write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Fills a temporary folder with `write(tmp)`, then renames it to `target`.

    A crash leaves no half-written dataset, and two sessions racing both end with a whole one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
