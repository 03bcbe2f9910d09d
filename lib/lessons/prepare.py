"""`lessons prepare`: warm what the lessons use, and time each lesson's live step afterwards.

What survives this process is the on-disk cache (converted EfficientNet-Lite weights, the
scikit-image photos); the compiled steps a server keeps are warmed by opening each lesson once.
The "warm" time is the live step run a second time in this process: what a teacher's click costs
once the server has run the lesson once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lib.lessons.lesson import Models, coerce_params
from lib.lessons.registry import list_lessons

# The step a teacher clicks, per lesson, when it is not the whole `run` (ideal-image: one image).
CLICK_PARAMS = {"ideal-image": {"which": "regularised"}}


def prepare_lessons(models: Models, *, overrides: dict[str, dict] | None = None,
                    on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Runs every lesson once cold and its click once warm.

    Args:
        models: where the backbones come from.
        overrides: lesson name -> parameters that replace its defaults (tests use tiny backbones).
        on_progress: `on_progress(done, total, message)` after each run.

    Returns:
        `{lesson name: {"cold_s": float, "warm_s": float, "click": {params that differ}}}`.
    """
    lessons = list_lessons()
    summary, total = {}, 2 * len(lessons)
    for n, lesson in enumerate(lessons):
        params = coerce_params(lesson, (overrides or {}).get(lesson.name, {}))
        click = dict(params, **CLICK_PARAMS.get(lesson.name, {}))
        began = time.perf_counter()
        lesson.run(models, **params)
        cold = time.perf_counter() - began
        if on_progress is not None:
            on_progress(2 * n + 1, total, f"{lesson.name}: cold {cold:.1f} s")
        began = time.perf_counter()
        lesson.run(models, **click)
        warm = time.perf_counter() - began
        if on_progress is not None:
            on_progress(2 * n + 2, total, f"{lesson.name}: warm {warm:.1f} s")
        summary[lesson.name] = {"cold_s": round(cold, 2), "warm_s": round(warm, 2),
                                "click": CLICK_PARAMS.get(lesson.name, {})}
    return summary
