"""Shared fixtures: an isolated cache, clean Keras state per test, tiny and real backbones."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
from pathlib import Path

# Isolate every test session from the user's cache and runs, before lib is imported. Tests import
# this file both as `conftest` and as `tests.conftest`; the marker keeps one cache per session.
# Each pytest-xdist worker is a session of its own: its own cache and run store, so no test sees
# another worker's runs, jobs or uploads (workers inherit the controller's environment).
_MARKER = "TRANSFERLAB_TEST_SESSION_CACHE" + os.environ.get("PYTEST_XDIST_WORKER", "")
if os.environ.get(_MARKER) != os.environ.get("TRANSFERLAB_CACHE") or _MARKER not in os.environ:
    os.environ[_MARKER] = tempfile.mkdtemp(prefix="transferlab-test-cache-")
_SESSION_CACHE = os.environ[_MARKER]
os.environ["TRANSFERLAB_CACHE"] = _SESSION_CACHE
os.environ["TRANSFERLAB_RUNS"] = os.path.join(_SESSION_CACHE, "runs")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Jobs run at once in tests: a slot held by one test's leftover job must not stall the next.
os.environ["TRANSFERLAB_MAX_JOBS"] = "0"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (the project's default): one test worker per core, at most 4, since each worker
    holds TensorFlow, the converted backbones and a cache of its own."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture(autouse=True)
def clean_keras_state():
    """Each test starts from clean global Keras state and fixed seeds."""
    # free_memory=False skips a full gc.collect() per test (~0.4 s each across the suite).
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def cache_root() -> Path:
    return Path(_SESSION_CACHE)


@pytest.fixture(scope="session")
def tiny_backbone():
    """The hidden 32-px random backbone (shared, frozen)."""
    from lib.backbones import load_backbone

    return load_backbone("tiny_random")


@pytest.fixture(scope="session")
def lite0():
    """Real EfficientNet-Lite0 with ImageNet weights, converted once per test session."""
    from lib.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """`../shared/datasets` beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real photo datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def make_image_folder(root: Path, classes: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """Writes a tiny class-folder dataset of coloured noise JPEGs, one colour cast per class.

    Args:
        root: folder to create.
        classes: class name -> number of images.
        size: side of each image in pixels.
        seed: RNG seed.

    Returns:
        `root`.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(sorted(classes.items())):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        tint = np.zeros(3)
        tint[c % 3] = 120.0
        for i in range(n):
            pixels = np.clip(rng.normal(100, 40, (size, size, 3)) + tint, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.jpg", quality=95)
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A 2-class, 12-images-per-class folder dataset that a tiny model can learn."""
    return make_image_folder(tmp_path / "toy", {"red": 12, "green": 12})


def run_lib_in_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m lib ARGS` in this process, for tests of what a command does rather than of
    the process around it (a fresh interpreter costs a TensorFlow import, about 7 s of CPU).

    Args:
        args: the command line after `python -m lib`.
        env: the whole environment to run under, as `subprocess.run(env=...)` takes it; restored
            after. Defaults to this process's environment.

    Returns:
        A `CompletedProcess` with the exit code and what the command wrote on stdout and stderr.
    """
    from lib.cli import main

    args = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        if env is not None:
            for name in set(os.environ) - set(env):
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:  # argparse's usage errors and --help
                code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["python", "-m", "lib", *args], code, out.getvalue(), err.getvalue())
