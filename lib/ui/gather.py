"""The Data page's "Gather classes": name classes, fill them from the webcam or with files, save.

The widgets only; checking, keeping and saving photos is `lib.data.gather`. The classes live in
this session's state (`lib.ui.state.gathering`), so nothing one visitor gathers reaches another
until it is saved, and a saved set is a new folder that nobody else's session changes.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib.data import gather
from lib.errors import TransferLabError
from lib.images import IMAGE_SUFFIXES
from lib.ui import navigation, state
from lib.ui.text import plain

THUMBNAIL_COLUMNS = 8
TARGET_LABEL = "Add photos to"


def gather_ui(current_spec: str) -> str | None:
    """Draws the gathering widgets.

    Args:
        current_spec: the session's dataset spec (a saved gathered set gets a download button).

    Returns:
        The saved set's folder (a dataset spec) when the person clicks save, else None.
    """
    session = state.gathering()
    classes = session["classes"]
    st.caption("Name a class, then fill it from the webcam or by dropping photos; two classes with "
               "about 10 photos each are enough for the frozen head to learn them in seconds.")
    add_class_section(classes, session)
    if not classes:
        st.info("Add at least two classes, e.g. 'thumbs up' and 'thumbs down'.")
        download_section(current_spec)
        return None
    target = target_ui(classes, session)
    intake_section(classes, target, session)
    for index, name in enumerate(list(classes)):
        class_card(classes, index, name)
    saved = save_section(classes)
    download_section(current_spec)
    return saved


def add_class_section(classes: gather.Classes, session: dict) -> None:
    """A name box and "Add class"; a bad or taken name is shown, not raised."""
    with st.form("data_gather_add", clear_on_submit=True, border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name = name_col.text_input("New class name", key="data_gather_new_class",
                                   placeholder="e.g. thumbs up")
        if button_col.form_submit_button("Add class", width="stretch") and name.strip():
            try:
                session["target"] = gather.add_class(classes, name)
            except TransferLabError as e:
                st.error(plain(e))


def target_ui(classes: gather.Classes, session: dict) -> str:
    """Which class the camera and the file drop fill (the newest class to start with)."""
    names = list(classes)
    current = session["target"] if session["target"] in classes else names[-1]
    # No key: a new list of classes is a new widget, which starts at the session's target.
    target = st.radio(TARGET_LABEL, names, index=names.index(current), horizontal=True,
                      format_func=plain)
    session["target"] = target
    return target


def intake_section(classes: gather.Classes, target: str, session: dict) -> None:
    """The webcam and the file drop for `target`; what they bring is added once, then cleared."""
    for problem in session["problems"]:
        st.warning(plain(problem))
    session["problems"] = []
    generation = session["widgets"]
    camera, files = st.columns(2)
    shot = camera.camera_input(f"Take a photo for {plain(target)}",
                               key=f"data_gather_camera_{generation}")
    dropped = files.file_uploader(f"Or drop photos for {plain(target)}", accept_multiple_files=True,
                                  type=[s.lstrip(".") for s in IMAGE_SUFFIXES],
                                  key=f"data_gather_files_{generation}")
    incoming = [(gather.CAMERA_SOURCE, shot.getvalue())] if shot is not None else []
    incoming += [(f.name, f.getvalue()) for f in dropped or []]
    if not incoming:
        return
    session["problems"] = gather.add_photos(classes, target, incoming)
    # New widget keys empty the camera and the drop zone, so the same photo is not added twice.
    session["widgets"] = generation + 1
    st.rerun()


def class_card(classes: gather.Classes, index: int, name: str) -> None:
    """One class: its name and count, its thumbnails (each removable), and "Remove class"."""
    photos = classes[name]
    with st.container(border=True):
        title, remove = st.columns([5, 1], vertical_alignment="center")
        title.markdown(f"**{plain(name)}** · {len(photos)} photo{'s' if len(photos) != 1 else ''}")
        if remove.button("Remove class", key=f"data_gather_remove_class_{index}", width="stretch"):
            gather.remove_class(classes, name)
            st.rerun()
        if not photos:
            st.caption("No photos yet.")
            return
        for start in range(0, len(photos), THUMBNAIL_COLUMNS):
            columns = st.columns(THUMBNAIL_COLUMNS)
            for column, number in zip(columns, range(start, min(start + THUMBNAIL_COLUMNS, len(photos))),
                                      strict=False):
                column.image(photos[number].thumbnail, width="stretch")
                if column.button("✕", key=f"data_gather_remove_{index}_{number}",
                                 help=f"Remove this photo ({photos[number].source})"):
                    gather.remove_photo(classes, name, number)
                    st.rerun()


def save_section(classes: gather.Classes) -> str | None:
    """The set's name and "Save and use these classes"; returns the saved folder on a click."""
    name_col, button_col = st.columns([3, 2], vertical_alignment="bottom")
    set_name = name_col.text_input("Name of the set", value=gather.DEFAULT_SET_NAME,
                                   key="data_gather_set_name")
    if not button_col.button("Save and use these classes", key="data_gather_save", type="primary",
                             width="stretch"):
        return None
    try:
        return str(gather.save_gathered(classes, set_name))
    except TransferLabError as e:
        st.error(plain(e))
        return None


def download_section(current_spec: str) -> None:
    """When the session's dataset is a saved gathered set: its zip, and the way on to training."""
    if not gather.is_gathered(current_spec):
        return
    folder = Path(current_spec)
    left, right = st.columns(2)
    # A callable: the zip is built only when someone clicks.
    left.download_button(f"Download {folder.name}.zip", data=lambda: gather.zip_dataset_folder(folder),
                         file_name=f"{folder.name}.zip", mime="application/zip",
                         key="data_gather_download", icon=":material/download:")
    with right:
        navigation.page_link(navigation.TRAIN, label="Next: train a head on these classes")
