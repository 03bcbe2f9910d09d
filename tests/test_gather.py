"""Gathering classes on the Data page (issue 9): the lib functions, and the page through AppTest.

AppTest drives `st.camera_input` and `st.file_uploader` with staged files, so the page's own
widgets are fed here; only a real webcam is out of reach (the browser would need a device).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lib.data import gather, load_dataset
from lib.data.gather import add_class, add_photos, remove_class, remove_photo, save_gathered
from lib.errors import TransferLabError
from lib.uploads import display_name
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    """A small noisy JPEG with a colour cast (distinct bytes per seed)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(0, 25, (size[1], size[0], 3)) + np.array(colour), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def two_classes(per_class: int = 4) -> gather.Classes:
    classes: gather.Classes = {}
    for name, colour in (("thumbs up", (200, 60, 60)), ("thumbs down", (60, 60, 200))):
        add_class(classes, name)
        problems = add_photos(classes, name, [(f"{name}{i}.jpg", jpeg_bytes(colour, seed=i))
                                              for i in range(per_class)])
        assert problems == []
    return classes


# ----- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, reason", [
    ("two\nlines", "U+000A"),           # a newline would write two labels for one class
    ("\u202eevil", "U+202E"),           # a right-to-left override shows the name reversed
    ("   ", "blank"),
    ("cats/dogs", "folder inside a folder"),
    ("..", "hidden"),
    (".hidden", "hidden"),
    ("__MACOSX", "system name"),
    ("x" * 101, "longer than"),
])
def test_bad_class_names_are_refused_with_the_name_echoed(name, reason):
    classes: gather.Classes = {}
    with pytest.raises(TransferLabError, match=re.escape(reason)) as caught:
        add_class(classes, name)
    assert repr(name)[:20] in str(caught.value)
    assert classes == {}


def test_colons_markdown_and_joiners_are_fine_and_names_are_stripped():
    classes: gather.Classes = {}
    for name in ("a:b", "**bold** [link](x.html)", "family \u200d emoji", "  padded  "):
        add_class(classes, name)
    assert list(classes) == ["a:b", "**bold** [link](x.html)", "family \u200d emoji", "padded"]


def test_the_same_name_twice_ignoring_case_is_refused():
    classes: gather.Classes = {}
    add_class(classes, "Cat")
    with pytest.raises(TransferLabError, match="already a class 'Cat'"):
        add_class(classes, "cat")


def test_the_number_of_classes_is_bounded(monkeypatch):
    monkeypatch.setattr(gather, "MAX_CLASSES", 2)
    classes: gather.Classes = {}
    add_class(classes, "a")
    add_class(classes, "b")
    with pytest.raises(TransferLabError, match="at most 2 classes"):
        add_class(classes, "c")


# ----- photos --------------------------------------------------------------------------------------


def test_bad_files_are_reported_by_name_and_good_ones_kept():
    classes: gather.Classes = {}
    add_class(classes, "red")
    truncated = jpeg_bytes((200, 0, 0))[:200]
    problems = add_photos(classes, "red", [("notes.txt", b"not an image at all"),
                                           ("empty.jpg", b""),
                                           ("cut.jpg", truncated),
                                           ("good.jpg", jpeg_bytes((200, 0, 0)))])
    assert len(problems) == 3 and len(classes["red"]) == 1
    assert "'notes.txt' is not an image" in problems[0]
    assert "empty.jpg" in problems[1] and "cut.jpg" in problems[2]
    assert not any("Traceback" in p for p in problems)
    with pytest.raises(TransferLabError, match="'blue'"):
        add_photos(classes, "blue", [("x.jpg", jpeg_bytes((0, 0, 200)))])


def test_a_decompression_bomb_is_refused(monkeypatch):
    import lib.images

    monkeypatch.setattr(lib.images.Image, "MAX_IMAGE_PIXELS", 100)
    classes: gather.Classes = {}
    add_class(classes, "big")
    problems = add_photos(classes, "big", [("huge.png", jpeg_bytes((0, 0, 0), size=(64, 64)))])
    assert problems and "huge.png" in problems[0] and "too large" in problems[0]
    assert classes["big"] == []


def test_photos_are_upright_rgb_bounded_and_stripped_of_exif():
    img = Image.new("RGBA", (1600, 400), (10, 200, 10, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", exif=exif)
    photo = gather.make_photo(buffer.getvalue(), "phone.jpg")
    with Image.open(io.BytesIO(photo.jpeg)) as kept:
        assert kept.mode == "RGB" and max(kept.size) == gather.MAX_SIDE
        assert kept.size[1] > kept.size[0]  # turned upright
        assert not kept.getexif()
    with Image.open(io.BytesIO(photo.thumbnail)) as thumb:
        assert max(thumb.size) == gather.THUMBNAIL_SIDE
    small = gather.make_photo(jpeg_bytes((0, 0, 0), size=(40, 30)), "small.jpg")
    with Image.open(io.BytesIO(small.jpeg)) as kept:
        assert kept.size == (40, 30)  # never enlarged


def test_a_full_class_refuses_more(monkeypatch):
    monkeypatch.setattr(gather, "MAX_PHOTOS_PER_CLASS", 2)
    classes: gather.Classes = {}
    add_class(classes, "a")
    problems = add_photos(classes, "a", [(f"{i}.jpg", jpeg_bytes((0, 0, 0), seed=i)) for i in range(3)])
    assert len(classes["a"]) == 2 and "at most 2 photos" in problems[0]


def test_remove_a_photo_and_a_class():
    classes = two_classes(per_class=3)
    first, third = classes["thumbs up"][0], classes["thumbs up"][2]
    remove_photo(classes, "thumbs up", 1)
    assert classes["thumbs up"] == [first, third]
    remove_photo(classes, "thumbs up", 7)  # gone already (a double click): nothing happens
    remove_class(classes, "thumbs up")
    assert list(classes) == ["thumbs down"]


# ----- saving --------------------------------------------------------------------------------------


def test_save_needs_two_classes_of_three_photos():
    classes: gather.Classes = {}
    add_class(classes, "a")
    with pytest.raises(TransferLabError, match="at least 2 classes"):
        save_gathered(classes)
    add_class(classes, "b")
    add_photos(classes, "a", [("1.jpg", jpeg_bytes((9, 9, 9)))])
    with pytest.raises(TransferLabError, match="at least 3 photos.*'a' has 1, 'b' has 0"):
        save_gathered(classes)


def test_saved_set_is_a_dataset_named_by_its_name_and_a_new_folder_per_content(cache_root):
    classes = two_classes()
    folder = save_gathered(classes, "gestures")
    assert folder.name == "gestures" and folder.parent.parent == cache_root / "uploads"
    assert sorted(p.name for p in folder.iterdir()) == ["thumbs down", "thumbs up"]
    assert not list(folder.parent.glob(".*"))  # no temporary folder left behind
    index = load_dataset(str(folder))
    assert index.class_names == ("thumbs down", "thumbs up") and len(index.records) == 8
    assert index.name == "gestures" and display_name(str(folder)) == "gestures"
    assert gather.is_gathered(str(folder)) and not gather.is_gathered(str(cache_root))
    assert save_gathered(classes, "gestures") == folder  # same content: same folder
    remove_photo(classes, "thumbs up", 0)
    changed = save_gathered(classes, "gestures")
    assert changed != folder and len(load_dataset(str(changed)).records) == 7
    assert len(load_dataset(str(folder)).records) == 8  # the old set is left as it was
    with pytest.raises(TransferLabError, match="set name '../x'"):
        save_gathered(classes, "../x")


def test_odd_but_allowed_names_survive_the_scan_and_labels(tmp_path):
    classes: gather.Classes = {}
    for name, colour in (("a:b", (200, 0, 0)), ("**bold**", (0, 0, 200))):
        add_class(classes, name)
        add_photos(classes, name, [(f"{i}.jpg", jpeg_bytes(colour, seed=i)) for i in range(3)])
    index = load_dataset(str(save_gathered(classes)))
    assert index.class_names == ("**bold**", "a:b")


def test_the_zip_loads_back_as_the_same_dataset(tmp_path):
    folder = save_gathered(two_classes(), "gestures")
    data = gather.zip_dataset_folder(folder)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
    assert names and all(n.startswith("gestures/thumbs ") for n in names)
    path = tmp_path / "gestures.zip"
    path.write_bytes(data)
    index = load_dataset(str(path))  # what `python -m lib train --data gestures.zip` reads
    assert index.class_names == ("thumbs down", "thumbs up") and len(index.records) == 8
    with pytest.raises(TransferLabError, match="does not exist"):
        gather.zip_dataset_folder(tmp_path / "nope")


def test_the_frozen_head_trains_on_a_saved_set():
    from lib.training import TrainConfig, train

    folder = save_gathered(two_classes(per_class=6), "trainable")
    result = train(TrainConfig(backbone="tiny_random", data=str(folder), epochs=2, batch_size=4,
                               test_split=0.0))
    assert result.class_names == ["thumbs down", "thumbs up"]
    assert len(result.history["loss"]) >= 1


# ----- the page ------------------------------------------------------------------------------------


@pytest.fixture
def data_page(tmp_path, monkeypatch) -> AppTest:
    """The Data page on "Gather classes", with tiny defaults."""
    folder = make_image_folder(tmp_path / "tiny_data", {"red": 4, "green": 4}, size=36)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(folder))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source_kind").set_value("Gather classes").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def add_class_on_page(at: AppTest, name: str) -> None:
    at.text_input(key="data_gather_new_class").input(name)
    next(b for b in at.button if b.label == "Add class").click().run()
    assert_clean(at)


def target_radio(at: AppTest):
    return next(r for r in at.radio if r.label == gather_label())


def gather_label() -> str:
    from lib.ui.gather import TARGET_LABEL

    return TARGET_LABEL


def test_gather_on_the_page_save_and_train(data_page):
    at = data_page
    assert any("Add at least two classes" in i.value for i in at.info)
    add_class_on_page(at, "thumbs up")
    add_class_on_page(at, "thumbs down")
    assert target_radio(at).value == "thumbs down"  # the newest class is filled first

    # Three webcam shots, then several files at once (one of them broken).
    for seed in range(3):
        at.camera_input[0].upload("photo.jpg", jpeg_bytes((60, 60, 200), seed=seed)).run()
        assert_clean(at)
    target_radio(at).set_value("thumbs up").run()
    at.file_uploader[0].set_value([(f"up{i}.jpg", jpeg_bytes((200, 60, 60), seed=i), "image/jpeg")
                                   for i in range(4)] + [("broken.jpg", b"\xff\xd8junk", "image/jpeg")])
    at.run()
    assert_clean(at)
    assert any("broken" in w.value and "not an image" in w.value for w in at.warning)
    classes = at.session_state["data_gather"]["classes"]
    assert {name: len(p) for name, p in classes.items()} == {"thumbs up": 4, "thumbs down": 3}
    assert any("**thumbs up** · 4 photos" in m.value for m in at.markdown)
    assert len(at.get("imgs")) + len(at.get("image")) >= 7  # a thumbnail per photo
    assert not at.file_uploader[0].value  # the drop zone was emptied: nothing is added twice

    at.button(key="data_gather_remove_0_0").click().run()  # a photo of "thumbs up"
    assert_clean(at)
    assert len(at.session_state["data_gather"]["classes"]["thumbs up"]) == 3

    at.text_input(key="data_gather_set_name").input("gestures")
    at.button(key="data_gather_save").click().run()
    assert_clean(at)
    spec = at.session_state["data_spec"]
    assert gather.is_gathered(spec) and Path(spec).name == "gestures"
    assert at.radio(key="data_source_kind").value == "Gather classes"
    assert any("gestures" in s.value and "6 images in 2 classes" in s.value for s in at.success)
    assert at.get("download_button")

    from lib.training import TrainConfig, train

    result = train(TrainConfig(backbone="tiny_random", data=spec, epochs=1, batch_size=2,
                               test_split=0.0))
    assert sorted(result.class_names) == ["thumbs down", "thumbs up"]


def test_page_refuses_bad_names_and_saving_too_little(data_page):
    at = data_page
    add_class_on_page(at, "a\u202eb")
    assert any("202E" in e.value and "OVERRIDE" in e.value for e in at.error)
    add_class_on_page(at, "**only**")
    assert any("\\*\\*only\\*\\*" in m.value for m in at.markdown)  # shown as typed
    at.button(key="data_gather_save").click().run()
    assert_clean(at)
    assert any("at least 2 classes" in e.value for e in at.error)
    at.button(key="data_gather_remove_class_0").click().run()
    assert_clean(at)
    assert at.session_state["data_gather"]["classes"] == {}


def test_sessions_gather_apart(data_page, tmp_path):
    at = data_page
    add_class_on_page(at, "mine")
    other = AppTest.from_file(APP, default_timeout=120).run()
    other.switch_page("pages/data.py").run()
    other.radio(key="data_source_kind").set_value("Gather classes").run()
    assert "data_gather" not in other.session_state or not other.session_state["data_gather"]["classes"]


def test_a_hosted_server_takes_a_gathered_set(data_page, monkeypatch):
    """Hosted mode opens no server folder to visitors, but a gathered set is an upload."""
    monkeypatch.setenv("TRANSFERLAB_HOSTED", "1")
    at = data_page
    for name, colour in (("left", (200, 60, 60)), ("right", (60, 60, 200))):
        add_class_on_page(at, name)
        at.file_uploader[0].set_value([(f"{name}{i}.jpg", jpeg_bytes(colour, seed=i), "image/jpeg")
                                       for i in range(3)])
        at.run()
        assert_clean(at)
    at.button(key="data_gather_save").click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]  # the split too: 3 photos a class suffice
    spec = at.session_state["data_spec"]
    assert gather.is_gathered(spec) and Path(spec).name == gather.DEFAULT_SET_NAME
    overview = "\n".join(m.value for m in at.success)
    assert "our\\-classes" in overview and "uploads" not in overview  # its name, not a cache path
