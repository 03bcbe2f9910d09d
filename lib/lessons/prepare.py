"""`lessons prepare`: warm what the lessons use, and time each lesson's live step afterwards.

What survives this process is the on-disk cache (converted EfficientNet-Lite weights, the
scikit-image photos); the compiled steps a server keeps are warmed by opening each lesson once.
The "warm" time is the live step run a second time in this process: what a teacher's click costs
once the server has run the lesson once. A lesson whose live step trains networks (`replay`) keeps its
result instead; its warm time is reading that back, and its cold time is what "Run it live" costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lib.lessons.lesson import Models, coerce_params, lesson_backbones, page_params
from lib.lessons.registry import list_lessons
from lib.lessons.replay import load_replay, save_replay

# The step a teacher clicks, per lesson, when it is not the whole `run` (ideal-image: one image).
CLICK_PARAMS = {"ideal-image": {"which": "regularised"}}


def prepare_lessons(models: Models, *, overrides: dict[str, dict] | None = None,
                    on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Runs every lesson once cold and its click once warm.

    Args:
        models: where the backbones come from.
        overrides: lesson name -> parameters that replace its defaults (tests use tiny backbones).
            Defaults to None: what the Lessons page runs (`page_params` on the page's backbone),
            so the page replays every result kept here.
        on_progress: `on_progress(done, total, message)` after each run.

    Returns:
        `{lesson name: {"cold_s": float, "warm_s": float, "click": {params that differ},
        "replay": bool}}`; a lesson with `replay` keeps its cold result for the page to replay.
    """
    lessons = list_lessons()
    summary, total = {}, 2 * len(lessons)
    backbone, _ = lesson_backbones()
    for n, lesson in enumerate(lessons):
        params = (page_params(lesson, backbone) if overrides is None else
                  coerce_params(lesson, overrides.get(lesson.name, {})))
        click = dict(params, **CLICK_PARAMS.get(lesson.name, {}))
        began = time.perf_counter()
        result = lesson.run(models, **params)
        cold = time.perf_counter() - began
        if lesson.replay:
            save_replay(lesson.name, params, result)
        if on_progress is not None:
            on_progress(2 * n + 1, total, f"{lesson.name}: cold {cold:.1f} s")
        began = time.perf_counter()
        if lesson.replay:  # in class the page replays what was kept; "Run it live" costs `cold`
            load_replay(lesson.name, params)
        else:
            lesson.run(models, **click)
        warm = time.perf_counter() - began
        if on_progress is not None:
            on_progress(2 * n + 2, total, f"{lesson.name}: warm {warm:.1f} s")
        summary[lesson.name] = {"cold_s": round(cold, 2), "warm_s": round(warm, 2),
                                "click": CLICK_PARAMS.get(lesson.name, {}), "replay": lesson.replay}
    return summary
