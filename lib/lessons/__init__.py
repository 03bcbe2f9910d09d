"""Lessons: a guided walkthrough a teacher can project (no Streamlit here).

* `lesson`: `Lesson`, `Models` (where models come from), `coerce_params`, `page_params`.
* `registry`: `list_lessons`, `get_lesson`, `run_lesson`.
* `features`, `adversarial`, `ideal`: one lesson each (its text and its `run`).
* `transfer`, `when_fails`: lessons that train on a few digits; `small_data`: their training steps.
* `branches`: the frozen head and fine-tuning branches the `frozen-vs-finetune` and
  `batchnorm-pitfall` lessons train (`train_branches`).
* `pictures`: feature maps as a mosaic.
* `output`: a lesson's result written as PNG/HTML files (the CLI's `lessons run --out`).
"""

from lib.lessons.lesson import (  # noqa: F401
    LESSON_BACKBONE,
    OTHER_BACKBONE,
    Lesson,
    Models,
    coerce_params,
    default_models,
    lesson_backbones,
    make_probe,
    page_params,
)
from lib.lessons.registry import get_lesson, list_lessons, run_lesson  # noqa: F401
