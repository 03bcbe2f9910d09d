"""What visitors leave on disk stays bounded: failed unpacks are removed, old entries pruned."""

from __future__ import annotations

import io
import os
import time
import zipfile

import pytest

from lib.data import archives
from lib.data.housekeeping import IN_USE_S, prune
from lib.errors import TransferLabError


def make_entry(folder, name: str, size: int, age_s: float):
    path = folder / name
    path.mkdir(parents=True)
    (path / "blob").write_bytes(b"x" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_prune_removes_old_then_least_recently_used_but_never_in_use(tmp_path):
    day = 86400
    old = make_entry(tmp_path, "old", 10, age_s=30 * day)
    lru = make_entry(tmp_path, "lru", 1000, age_s=2 * day)
    recent = make_entry(tmp_path, "recent", 1000, age_s=1 * day)
    in_use = make_entry(tmp_path, "in_use", 5000, age_s=IN_USE_S / 2)
    removed = prune(tmp_path, max_bytes=6500, max_age_s=7 * day)
    assert set(removed) == {old, lru}
    assert recent.is_dir() and in_use.is_dir()  # in use is kept even though it is the largest


def test_a_zip_that_is_not_a_dataset_leaves_nothing_behind(cache_root):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "no class folders here, just text " * 1000)
    before = set((cache_root / "datasets" / "zip").glob("*")) if (cache_root / "datasets" / "zip").is_dir() else set()
    with pytest.raises(TransferLabError, match="no class folders"):
        archives.load_zip(buf.getvalue(), "notes.zip")
    after = set((cache_root / "datasets" / "zip").glob("*"))
    assert after == before
