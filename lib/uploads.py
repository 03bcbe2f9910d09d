"""Uploaded files kept on the server: stored once, named by their content.

The Data page hands an uploaded zip here and gets back a path it can use as a dataset spec; the
same bytes uploaded twice (by anyone) map to the same file, so the dataset cache recognises them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lib.errors import TransferLabError
from lib.storage import atomic_write_bytes, cache_dir

UPLOADS_DIR = "uploads"
DIGEST_CHARS = 16


def save_upload(name: str, data: bytes) -> str:
    """Keeps uploaded bytes in the cache, under a folder named by their SHA-1, and returns the path.

    Args:
        name: the file name the browser sent; only its last part is used, so a name such as
            `../../x.zip` cannot leave the uploads folder.
        data: the file's bytes.

    Returns:
        The stored file's path, as a string (usable as a dataset spec for a zip).

    Raises:
        TransferLabError: the name has no file part (e.g. `""` or `"/"`).
    """
    base = Path(str(name)).name
    if not base or base in (".", ".."):
        raise TransferLabError(f"Received an upload named {name!r}; it needs a file name.")
    digest = hashlib.sha1(data).hexdigest()[:DIGEST_CHARS]
    path = cache_dir() / UPLOADS_DIR / digest / base
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return str(path)
