"""The lesson registry: every implemented lesson, in teaching order, by name."""

from __future__ import annotations

import functools

from lib.errors import TransferLabError
from lib.lessons import adversarial, features, ideal, transfer, when_fails
from lib.lessons import batchnorm as batchnorm_lesson
from lib.lessons import finetune as finetune_lesson
from lib.lessons.lesson import Lesson, Models, coerce_params, default_models


def build_lessons() -> dict[str, Lesson]:
    """Every implemented lesson, in teaching order."""
    lessons = (features.LESSON, transfer.LESSON, finetune_lesson.LESSON, batchnorm_lesson.LESSON,
               ideal.LESSON, adversarial.LESSON, when_fails.LESSON)
    return {lesson.name: lesson for lesson in lessons}


@functools.lru_cache(maxsize=1)
def _lessons() -> dict[str, Lesson]:
    return build_lessons()


def list_lessons() -> list[Lesson]:
    """Every implemented lesson, in teaching order."""
    return list(_lessons().values())


def get_lesson(name: str) -> Lesson:
    """The lesson called `name`.

    Raises:
        TransferLabError: no such lesson.
    """
    lessons = _lessons()
    if name not in lessons:
        raise TransferLabError(f"Received `lesson={name}`; choose one of {', '.join(lessons)}.")
    return lessons[name]


def run_lesson(name: str, params: dict | None = None, models: Models | None = None) -> dict:
    """Runs a lesson's computation with its defaults overridden by `params`.

    Returns:
        `{"numbers": {...}, "images": {...}, "figures": {...}}`.
    """
    lesson = get_lesson(name)
    return lesson.run(models or default_models(), **coerce_params(lesson, params or {}))
