"""Datasets that are materialised once into the cache as class folders: built-in sets and TFDS.

Why `builtin:faces` is the built-in set
---------------------------------------
The built-in set must work offline right after `pip install -r requirements.txt`, be real photos,
and have 2+ classes with 50+ images each. scikit-image (already required for its test photos) ships
`skimage.data.lfw_subset()` inside its wheel: 200 real 25x25 grayscale photos, the first 100 faces
from Labeled Faces in the Wild and the last 100 non-face patches cut from natural images (we looked
at them). That gives two classes of 100 real images, no download and no licence question beyond
scikit-image's own. The photos are small and grey, a modest shift from ImageNet's colour photos, so a
pretrained backbone still gives useful features while a network trained from scratch on 160 tiny
images has little to go on: the lesson of transfer learning on small data. Nothing else in our
requirements ships a labelled set of real photos (the other skimage images are single pictures).

We store the original 25x25 pixels (as RGB PNG, grey copied to three channels, so the report does
not list 200 conversions); the pipeline resizes them like any other image.

TFDS names (`tfds:tf_flowers`) are downloaded with `tensorflow_datasets` when it is installed and
the network is reachable, then written out as class folders, so they load like any folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from lib.errors import TransferLabError
from lib.net import reachable
from lib.progress import ProgressFn
from lib.storage import atomic_write_folder, cache_dir

BUILTIN_DATASETS: dict[str, str] = {
    "faces": "Faces vs not-faces: 2 classes x 100 real 25x25 grey photos (LFW, ships with scikit-image)",
}
DEFAULT_DATASET = "builtin:faces"

# skimage's lfw_subset: the first 100 images are faces, the last 100 are not.
FACES_SPLIT = 100
FACES_CLASSES = ("face", "not_face")
# A quick reachability check before TFDS may block on network calls; keeps offline use snappy.
TFDS_HOSTS = (("storage.googleapis.com", 443), ("www.tensorflow.org", 443))
NETWORK_TIMEOUT_S = 3.0
TFDS_NAME = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")
PROGRESS_EVERY = 100
# Magic bytes -> file suffix for the encoded images TFDS hands back.
IMAGE_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"))



def materialise_builtin(name: str) -> Path:
    """Writes a built-in dataset into the cache once and returns its folder of class folders.

    Args:
        name: a key of `BUILTIN_DATASETS`, e.g. "faces".

    Returns:
        `<cache>/datasets/builtin/NAME`.

    Raises:
        TransferLabError: the name is unknown.
    """
    if name not in BUILTIN_DATASETS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_DATASETS)
        raise TransferLabError(f"Unknown built-in dataset 'builtin:{name}'. Available: {known}.")
    target = cache_dir() / "datasets" / "builtin" / name
    if not target.is_dir():
        atomic_write_folder(target, write_faces)
    return target


def write_faces(root: Path) -> None:
    """Writes skimage's LFW subset as `root/face/NNN.png` and `root/not_face/NNN.png`."""
    from skimage.data import lfw_subset

    images = lfw_subset()  # (200, 25, 25) float64 in [0, 1]
    for i, image in enumerate(images):
        class_name = FACES_CLASSES[0] if i < FACES_SPLIT else FACES_CLASSES[1]
        grey = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB").save(
            folder / f"{i % FACES_SPLIT:03d}.png"
        )


# --- TensorFlow Datasets ---------------------------------------------------------------------


def network_available(timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """True when one of TFDS's download hosts answers within `timeout` seconds (never when offline)."""
    return reachable(TFDS_HOSTS, timeout)


def materialise_tfds(name: str, *, on_progress: ProgressFn | None = None) -> Path:
    """Downloads a TFDS dataset once and writes its train split as class folders in the cache.

    Args:
        name: a TFDS name, e.g. "tf_flowers" or "cats_vs_dogs" (optionally "name/config:version").
        on_progress: optional `fn(done, total, message)` while writing images.

    Returns:
        `<cache>/datasets/tfds/NAME` (with "/" and ":" replaced).

    Raises:
        TransferLabError: the name is invalid, `tensorflow_datasets` is not installed, the network
            is unreachable, the download fails, or the dataset has no image/label pair.
    """
    name = name.strip()
    if not TFDS_NAME.match(name):
        raise TransferLabError(
            f"'tfds:{name}' is not a TFDS dataset name; use e.g. tfds:tf_flowers or tfds:cats_vs_dogs."
        )
    target = cache_dir() / "datasets" / "tfds" / re.sub(r"[/:]", "_", name)
    if target.is_dir():
        return target
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise TransferLabError(
            f"tfds:{name} needs the tensorflow-datasets package, which is not installed "
            "(pip install tensorflow-datasets), and the network to download it once."
        ) from e
    data_dir = cache_dir() / "tfds"
    prepared = (data_dir / name.split(":")[0]).is_dir()
    if not prepared and not network_available():
        raise TransferLabError(
            f"tfds:{name} needs the network to download it once, and you are offline. "
            "Use builtin:faces, a folder or a zip instead."
        )
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises many types: unknown name, HTTP, checksum, disk
        raise TransferLabError(f"Could not download tfds:{name}: {e}") from e
    atomic_write_folder(
        target, lambda tmp: write_tfds_images(tfds, builder, name, tmp, on_progress)
    )
    return target


def write_tfds_images(tfds, builder, name: str, root: Path, on_progress: ProgressFn | None) -> None:
    """Writes the train split's encoded images into `root/<class>/NNNNNN.<ext>` without re-encoding.

    Raises:
        TransferLabError: the dataset is not an image classification set.
    """
    image_key, label_key = supervised_keys(builder, name)
    class_names = builder.info.features[label_key].names
    total = builder.info.splits["train"].num_examples
    dataset = builder.as_dataset(split="train", decoders={image_key: tfds.decode.SkipDecoding()})
    for folder in class_names:
        (root / safe_folder_name(folder)).mkdir(parents=True, exist_ok=True)
    for i, example in enumerate(tfds.as_numpy(dataset)):
        data = bytes(example[image_key])
        folder = root / safe_folder_name(class_names[int(example[label_key])])
        (folder / f"{i:06d}{image_suffix(data)}").write_bytes(data)
        if on_progress and (i + 1) % PROGRESS_EVERY == 0:
            on_progress(i + 1, total, f"Wrote {i + 1} of {total} tfds:{name} images")


def supervised_keys(builder, name: str) -> tuple[str, str]:
    """Returns the (image, label) feature names of a TFDS classification dataset.

    Raises:
        TransferLabError: the dataset has no image/label pair.
    """
    keys = getattr(builder.info, "supervised_keys", None)
    if not keys or len(keys) != 2:
        raise TransferLabError(
            f"tfds:{name} is not an image classification dataset (no image/label pair)."
        )
    return keys[0], keys[1]


def safe_folder_name(label: str) -> str:
    """Makes a class name safe as a folder name."""
    return re.sub(r"[^\w\-. ]", "_", str(label)).strip(". ") or "class"


def image_suffix(data: bytes) -> str:
    """Guesses a file suffix from an encoded image's first bytes (default ".jpg")."""
    for magic, suffix in IMAGE_MAGIC:
        if data.startswith(magic):
            return suffix
    return ".jpg"
