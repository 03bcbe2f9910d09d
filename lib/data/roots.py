"""Which server folders a visitor of the app may use as a dataset.

A shared server must not let a visitor read (or list) whatever folder they can name. The Data page's
"Folder on the server" accepts only folders under `TRANSFERLAB_DATA_ROOTS` (separated by
`os.pathsep`). Without it, a local app allows the user's home and the built-in sets' folder, and a
hosted one (`TRANSFERLAB_HOSTED=1`) allows none: its visitors upload zips. A refused path gets a
message that never says what the path holds, or even whether it exists.

The command line is not limited: whoever runs `python -m lib` already has the machine's shell.
"""

from __future__ import annotations

import os
from pathlib import Path

from lib.errors import TransferLabError
from lib.storage import cache_dir

DATA_ROOTS_ENV = "TRANSFERLAB_DATA_ROOTS"
HOSTED_ENV = "TRANSFERLAB_HOSTED"


def hosted() -> bool:
    """True when the server is hosted for visitors (`TRANSFERLAB_HOSTED=1`)."""
    return os.environ.get(HOSTED_ENV, "").strip().lower() in ("1", "true", "yes")


def builtin_sets_dir() -> Path:
    """Where the built-in datasets are written as folders of class sub-folders."""
    return cache_dir() / "datasets" / "builtin"


def data_roots() -> list[Path]:
    """The folders under which the app accepts a dataset folder, resolved.

    Returns:
        `TRANSFERLAB_DATA_ROOTS` when set; else none when hosted; else the home folder and the
        built-in sets' folder.
    """
    configured = os.environ.get(DATA_ROOTS_ENV, "").strip()
    if configured:
        roots = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    elif hosted():
        roots = []
    else:
        roots = [Path.home(), builtin_sets_dir()]
    return [r.resolve() for r in roots]


def check_server_folder(folder: str) -> str:
    """Returns the folder, resolved, when the app may read it as a dataset.

    Args:
        folder: what the visitor typed.

    Returns:
        The resolved path as a string (links followed, so a link cannot lead outside a root).

    Raises:
        TransferLabError: the folder is not under an allowed root. The message names the roots and
            never what the folder holds or whether it exists.
    """
    text = str(folder).strip()
    if not text:
        raise TransferLabError("No folder given. Type the path of a folder of class sub-folders.")
    path = Path(text).expanduser().resolve()
    roots = data_roots()
    if any(path == root or root in path.parents for root in roots):
        return str(path)
    if not roots:
        raise TransferLabError(
            f"Received `{text}`: this server does not open its own folders to visitors. "
            f"Upload a zip of class folders instead (the operator can share folders with {DATA_ROOTS_ENV})."
        )
    shown = ", ".join(str(r) for r in roots)
    raise TransferLabError(
        f"Received `{text}`: this server only opens dataset folders under {shown}. "
        f"Choose a folder there, or upload a zip (the operator can share more with {DATA_ROOTS_ENV})."
    )
