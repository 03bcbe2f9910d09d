"""Dataset sources: one dispatcher from a spec to a scanned `DatasetIndex`.

A spec is a folder of class sub-folders, a `.zip` of one, `builtin:NAME` or `tfds:NAME`. Every source
ends up as a folder that `lib.data.scan.load_folder` checks. The names other modules used from here
before the data package was split stay importable from this module.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from lib.data.archives import (  # noqa: F401  (re-exported)
    MAX_ZIP_BYTES,
    MAX_ZIP_FILES,
    extract_zip,
    load_zip,
    safe_member_path,
)
from lib.data.builtin import (  # noqa: F401  (re-exported: the contract names them here)
    BUILTIN_DATASETS,
    DEFAULT_DATASET,
    materialise_builtin,
    materialise_tfds,
)
from lib.data.records import DatasetIndex, ImageRecord  # noqa: F401  (re-exported)
from lib.data.scan import (  # noqa: F401  (re-exported)
    MAX_FOLDER_FILES,
    MIN_IMAGES_PER_CLASS,
    load_folder,
    sample_images,
    scan_file,
)
from lib.errors import TransferLabError
from lib.progress import ProgressFn
from lib.uploads import display_name

BUILTIN_PREFIX = "builtin:"
TFDS_PREFIX = "tfds:"


def load_dataset(spec: str, *, on_progress: ProgressFn | None = None) -> DatasetIndex:
    """Loads a dataset from any source.

    Args:
        spec: a folder of class sub-folders, a path to a `.zip`, `"builtin:NAME"` (see
            `BUILTIN_DATASETS`) or `"tfds:NAME"` (e.g. `tfds:tf_flowers`, needs the network once).
        on_progress: optional `fn(done, total, message)` called while scanning.

    Returns:
        The `DatasetIndex`.

    Raises:
        TransferLabError: the source does not exist or is not a usable dataset.
    """
    spec = str(spec).strip()
    if not spec:
        raise TransferLabError(
            "No dataset given. Use a folder of class sub-folders, a .zip, or builtin:faces."
        )
    if spec.startswith(BUILTIN_PREFIX):
        folder = materialise_builtin(spec[len(BUILTIN_PREFIX) :])
        return load_folder(folder, name=spec, on_progress=on_progress)
    if spec.startswith(TFDS_PREFIX):
        folder = materialise_tfds(spec[len(TFDS_PREFIX) :], on_progress=on_progress)
        return load_folder(folder, name=spec, on_progress=on_progress)
    path = Path(spec).expanduser()
    if path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        return load_zip(path, name=path.name, on_progress=on_progress)
    # A folder in the uploads area (a gathered set) is named by its own name, not the cache path.
    return load_folder(path, name=display_name(str(path)), on_progress=on_progress)
