"""Lesson results kept on disk, so a step that trains for minutes replays in a class in a second.

`python -m lib lessons prepare` runs the lessons whose live step trains networks (transfer against
scratch, fine-tuning, BatchNorm) and keeps each result here; the Lessons page shows the kept result
at once and offers "Run it live" to compute it again in front of the class.

A result is `{"numbers": JSON, "images": {name: uint8 array}, "figures": {name: plotly Figure}}`;
it is stored as `numbers.json`, `images.npz` (never pickled: `allow_pickle=False`) and the figures as
plotly JSON, in one folder per lesson and parameter set, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from lib.storage import atomic_write_folder, cache_dir

# Bump when a lesson's result changes shape, so an old cache is recomputed rather than misread.
REPLAY_VERSION = 1
NUMBERS_FILE, IMAGES_FILE, FIGURES_FILE = "numbers.json", "images.npz", "figures.json"


def replay_dir(name: str, params: dict, root: Path | None = None) -> Path:
    """The folder that keeps `name`'s result for `params` (which need not exist).

    Args:
        name: the lesson's name.
        params: its complete parameters (after `coerce_params`), the cache key.
        root: the cache root. Defaults to None: `cache_dir() / "lessons"`.
    """
    key = json.dumps({"v": REPLAY_VERSION, "params": params}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (root or cache_dir() / "lessons") / name / digest


def save_replay(name: str, params: dict, result: dict, root: Path | None = None) -> Path:
    """Keeps `result` for `(name, params)`, replacing an older one.

    Returns:
        The folder written.
    """
    target = replay_dir(name, params, root)

    def write(folder: Path) -> None:
        (folder / NUMBERS_FILE).write_text(json.dumps(
            {"params": params, "numbers": result.get("numbers", {})}, default=str))
        images = {k: np.asarray(v) for k, v in result.get("images", {}).items()}
        np.savez_compressed(folder / IMAGES_FILE, **images)
        figures = {k: fig.to_json() for k, fig in result.get("figures", {}).items()}
        (folder / FIGURES_FILE).write_text(json.dumps(figures))

    # A folder cannot be renamed over a full one; the old result goes first.
    shutil.rmtree(target, ignore_errors=True)
    atomic_write_folder(target, write)
    return target


def load_replay(name: str, params: dict, root: Path | None = None) -> dict | None:
    """The kept result for `(name, params)`, or None when there is none or it cannot be read.

    A damaged cache entry is treated as absent (the lesson then runs live), never as an error.
    """
    import plotly.io as pio

    folder = replay_dir(name, params, root)
    try:
        numbers = json.loads((folder / NUMBERS_FILE).read_text())["numbers"]
        with np.load(folder / IMAGES_FILE, allow_pickle=False) as npz:
            images = {k: npz[k] for k in npz.files}
        figures = {k: pio.from_json(v) for k, v in
                   json.loads((folder / FIGURES_FILE).read_text()).items()}
    except (OSError, ValueError, KeyError):
        return None
    return {"numbers": numbers, "images": images, "figures": figures, "replayed": True}
