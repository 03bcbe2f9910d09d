"""What every lesson's screen shares: its state in the URL, the server's models, and results
computed once per session (or replayed from what `python -m lib lessons prepare` kept).

The URL holds the lesson's state, so a teacher can bookmark a prepared lesson:
`?lesson=NAME&step=N&present=1&seed=S` plus the lesson's choices (e.g. `photo`, `eps`).
"""

from __future__ import annotations

import streamlit as st

from lib.lessons import Lesson, Models, lesson_backbones, page_params
from lib.lessons.features import PHOTOS
from lib.lessons.replay import load_replay
from lib.ui import resources, state

# Every button that starts a lesson's live computation starts with this word ("Run it live",
# "Run: train the networks", "Run: plain gradient ascent"), so the generic page passes (AppTest
# and the browser) find each lesson's live step without knowing the lesson.
RUN_PREFIX = "Run"
PHOTO_NAMES = {"chelsea": "Chelsea the cat", "coffee": "A cup of coffee", "astronaut": "An astronaut"}


def url_value(key: str, default, cast):
    """A query parameter converted by `cast`, or `default` when absent or malformed."""
    raw = st.query_params.get(key)
    if raw is None:
        return default
    try:
        return cast(raw)
    except (TypeError, ValueError):
        return default


def set_url(**values) -> None:
    """Writes values into the URL (None removes a key)."""
    for key, value in values.items():
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)


def lesson_models() -> Models:
    """The server's shared, cached backbones and probes."""
    return Models(backbone=resources.get_backbone, probe=resources.get_backbone_probe)


def _result_key(lesson: Lesson, params: dict) -> tuple:
    return (lesson.name, tuple(sorted(params.items())))


def run_cached(lesson: Lesson, *, with_progress: bool = False, **params) -> dict:
    """Runs a lesson once per session and choice of parameters (Next/Back redraw, not recompute).

    Args:
        lesson: the lesson.
        with_progress: draw a progress bar from the run's `on_progress` (a long step).
        **params: the run's parameters (the cache key).
    """
    results = state.lesson_results()
    key = _result_key(lesson, params)
    if key not in results:
        results[key] = _compute(lesson, with_progress, params)
    return results[key]


def kept_result(lesson: Lesson, params: dict) -> dict | None:
    """The result for `params` computed earlier in this session, or else the one
    `lessons prepare` kept (it carries `"replayed": True` and is remembered for the session);
    None when there is neither. Computes nothing.

    Args:
        lesson: the lesson.
        params: its complete parameters (`page_params`), the cache key.
    """
    results = state.lesson_results()
    key = _result_key(lesson, params)
    if key not in results:
        kept = load_replay(lesson.name, params)
        if kept is None:
            return None
        results[key] = kept
    return results[key]


def run_live(lesson: Lesson, *, with_progress: bool = True, **params) -> dict:
    """Computes the lesson now, replacing a replayed or earlier result for these parameters."""
    result = _compute(lesson, with_progress, params)
    state.lesson_results()[_result_key(lesson, params)] = result
    return result


def _compute(lesson: Lesson, with_progress: bool, params: dict) -> dict:
    extra = {}
    if with_progress:
        bar = st.progress(0.0, text=f"Starting… ({lesson.timing})")
        extra["on_progress"] = lambda done, total, message: bar.progress(
            min(1.0, done / max(total, 1)), text=message)
    with st.spinner(f"Computing… ({lesson.timing})"):
        return lesson.run(lesson_models(), **params, **extra)


def cached_result(lesson: Lesson, **params) -> dict | None:
    """A result computed earlier in this session, or None."""
    return state.lesson_results().get(_result_key(lesson, params))


def replay_controls(lesson: Lesson, result: dict, interactive: bool, **params) -> dict:
    """Says that `result` was prepared before class, and (when `interactive`) offers to run it
    live. Returns the result to show (the live one after a click)."""
    if not result.get("replayed"):
        return result
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption("Prepared before class with `python -m lib lessons prepare`; the same "
                 f"computation runs live on a click ({lesson.timing}).")
    if interactive and right.button(f"{RUN_PREFIX} it live", key=f"lessons_{lesson.name}_live"):
        return run_live(lesson, **params)
    return result


def trained_result(lesson: Lesson, interactive: bool) -> dict | None:
    """A training lesson's result on the page's backbone (`page_params`): computed earlier in
    this session, kept by `lessons prepare` (shown at once, with "Run it live"), or trained on a
    click of "Run: train the networks" (with progress). Nothing trains on page load: None when
    no result is there yet and nobody clicked."""
    backbone, _ = lesson_backbones()
    params = page_params(lesson, backbone)
    result = kept_result(lesson, params)
    if result is None:
        if interactive and st.button(f"{RUN_PREFIX}: train the networks ({lesson.timing})",
                                     key=f"lessons_{lesson.name}_train"):
            result = run_cached(lesson, with_progress=True, **params)
        else:
            st.info("Not trained yet: click the button, or run `python -m lib lessons prepare` "
                    "before class so the result is shown at once." if interactive else
                    "Train the networks on the previous step.")
            return None
    return replay_controls(lesson, result, interactive, **params)


def photo_choice(lesson: Lesson, interactive: bool) -> str:
    """The photo, from the URL; a picker when `interactive`."""
    photo = url_value("photo", "chelsea", str)
    photo = photo if photo in PHOTOS else "chelsea"
    if interactive:
        photo = st.segmented_control("Photo", PHOTOS, default=photo, format_func=PHOTO_NAMES.get,
                                     key=f"lessons_{lesson.name}_photo") or photo
        set_url(photo=photo)
    return photo
