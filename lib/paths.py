"""Where TransferLab keeps converted weights, feature caches and runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_weights(model, path: Path) -> None:
    """Saves a Keras model's weights (`.weights.h5`) so readers never see half a file.

    Keras writes in place and insists on the `.weights.h5` suffix, so the temporary file keeps it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}.{os.getpid()}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
