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


def display_name(spec: str | None) -> str:
    """How the UI names a dataset spec: an uploaded file by the name the person gave it.

    An upload is stored as `<cache>/uploads/<digest>/<name>` (see `save_upload`); that path is
    the session's dataset spec and a run's `data`, but the person expects `name` (e.g.
    `flowers3.zip`), and a hosted server should not show its cache layout. Other specs
    (`builtin:NAME`, `tfds:NAME`, a server folder the person typed) are shown as they are.

    Args:
        spec: a dataset spec, or None.

    Returns:
        The name to show; "" for None or "".
    """
    if not spec:
        return ""
    path = Path(str(spec))
    uploads = cache_dir() / UPLOADS_DIR
    try:
        inside = path.parent.parent.resolve() == uploads.resolve()
    except (OSError, RuntimeError):
        inside = False
    return path.name if inside else str(spec)
