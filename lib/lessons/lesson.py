"""A lesson: what it says, and the function that computes what it shows.

A `Lesson` is text (title, paragraphs, what to notice, a question and its answer) plus `run`, which
computes the lesson's key numbers, images and figures on real models. The Lessons page and
`python -m lib lessons run` call the same `run` with the same defaults.

`run(models, **params) -> dict` returns `{"numbers": {...JSON...}, "images": {name: (H, W, 3)
uint8}, "figures": {name: plotly Figure}}`. Models come from a `Models` source, so the page can pass
its shared, cached loaders and the CLI and tests a per-process one.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from lib.errors import TransferLabError

# The backbone every lesson uses unless told otherwise: real ImageNet weights, offline.
LESSON_BACKBONE = "efficientnet_lite0"
# A second backbone that judges what the first made (the ideal-image lesson).
OTHER_BACKBONE = "efficientnet_lite2"
# Tests (and a server that must stay small) point the Lessons page at other backbones.
BACKBONE_ENV, OTHER_BACKBONE_ENV = "TRANSFERLAB_LESSON_BACKBONE", "TRANSFERLAB_LESSON_OTHER_BACKBONE"
# JSON, lesson name -> parameters the Lessons page runs it with instead of its defaults: a small
# server (or the app's tests) makes the live steps shorter with it (fewer epochs, ascent steps).
PARAMS_ENV = "TRANSFERLAB_LESSON_PARAMS"


def lesson_backbones() -> tuple[str, str]:
    """`(backbone, other)` the Lessons page uses: Lite0 and Lite2 unless the environment says.

    `TRANSFERLAB_LESSON_BACKBONE` / `TRANSFERLAB_LESSON_OTHER_BACKBONE` name them. A server whose
    default backbone (`TRANSFERLAB_DEFAULT_BACKBONE`) is a hidden test backbone (the app's tests
    and browser checks) uses that one for both, so a page smoke test loads no real weights.
    """
    from lib.backbones import get_spec

    default = os.environ.get("TRANSFERLAB_DEFAULT_BACKBONE")
    fallback = None
    if default:
        try:
            fallback = None if get_spec(default).listed else default
        except TransferLabError:
            fallback = None
    return (os.environ.get(BACKBONE_ENV) or fallback or LESSON_BACKBONE,
            os.environ.get(OTHER_BACKBONE_ENV) or fallback or OTHER_BACKBONE)


@dataclass(frozen=True)
class Models:
    """Where a lesson gets its models (by registry name).

    Attributes:
        backbone: `name -> lib.backbones.Backbone` (shared, never modified).
        probe: `name -> lib.inside.ModelProbe` on that backbone's own classifier.
    """

    backbone: Callable[[str], object]
    probe: Callable[[str], object]


@functools.lru_cache(maxsize=4)
def load_lesson_backbone(name: str):
    """A backbone loaded once per process (the CLI and tests; the page uses its shared cache)."""
    from lib.backbones import load_backbone

    return load_backbone(name)


@functools.lru_cache(maxsize=4)
def load_lesson_probe(name: str):
    """A probe on a backbone's classifier, built once per process."""
    return make_probe(load_lesson_backbone(name))


def make_probe(backbone):
    """A `ModelProbe` on a backbone's classifier, with ImageNet labels for a 1000-class model.

    Raises:
        TransferLabError: a feature-vector backbone with no classifier.
    """
    from lib.backbones.imagenet import imagenet_labels
    from lib.inside.probe import ModelProbe

    classes = backbone.spec.num_classes
    if not classes:
        raise TransferLabError(
            f"Received `backbone={backbone.spec.name}`, which has no classifier; lessons need one."
        )
    labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    return ModelProbe(backbone.model, labels)


def default_models() -> Models:
    """Per-process loaders for the CLI and tests."""
    return Models(backbone=load_lesson_backbone, probe=load_lesson_probe)


@dataclass(frozen=True)
class Lesson:
    """One lesson: one screen of text around one live computation.

    Attributes:
        name: the URL name (`?lesson=NAME`) and CLI name.
        title: the heading.
        paragraphs: two or three short paragraphs for students who have seen a CNN once.
        notice: what to notice in the result, one point per entry.
        question: a question for the class.
        answer: its answer, revealed on a click.
        run: `run(models, **params) -> {"numbers", "images", "figures"}`.
        defaults: the parameters `run` takes and their defaults (the CLI's `--param` keys).
        timing: how long the live step takes on 2 CPU cores, for the screen.
        replay: the live step trains networks for longer than a class waits: `lessons prepare`
            keeps its result (`lib.lessons.replay`) and the page replays it, with "Run it live";
            with nothing kept the page trains only on "Run: train the networks", never on load.
    """

    name: str
    title: str
    paragraphs: tuple[str, ...]
    notice: tuple[str, ...]
    question: str
    answer: str
    run: Callable[..., dict] = field(repr=False, compare=False)
    defaults: dict = field(default_factory=dict, compare=False)
    timing: str = ""
    replay: bool = False

    def describe(self) -> dict:
        """The lesson as JSON (what `lessons list` prints)."""
        return {"name": self.name, "title": self.title, "paragraphs": list(self.paragraphs),
                "notice": list(self.notice), "question": self.question, "answer": self.answer,
                "defaults": dict(self.defaults), "timing": self.timing, "replay": self.replay}


def page_params(lesson: Lesson, backbone: str) -> dict:
    """The parameters the Lessons page starts a lesson from: its defaults on `backbone`, updated
    with what `TRANSFERLAB_LESSON_PARAMS` names for it. For a training lesson they are the whole
    key its result is kept under, so `lessons prepare` with the same overrides is replayed.

    Raises:
        TransferLabError: the variable is not a JSON object of objects, or names a parameter the
            lesson does not take.
    """
    raw = os.environ.get(PARAMS_ENV, "").strip()
    overrides = {}
    if raw:
        try:
            overrides = json.loads(raw)
        except ValueError as e:
            raise TransferLabError(f"Received `{PARAMS_ENV}={raw}`, which is not JSON; write e.g. "
                                   '{"transfer-vs-scratch": {"epochs": 10}}.') from e
        if not isinstance(overrides, dict) or not all(isinstance(v, dict)
                                                      for v in overrides.values()):
            raise TransferLabError(f"Received `{PARAMS_ENV}={raw}`; map each lesson's name to "
                                   "its parameters, e.g. {\"transfer-vs-scratch\": {\"epochs\": 10}}.")
    return coerce_params(lesson, {"backbone": backbone, **overrides.get(lesson.name, {})})


def coerce_params(lesson: Lesson, params: dict) -> dict:
    """The lesson's defaults updated with `params`, each converted to its default's type.

    Raises:
        TransferLabError: an unknown parameter, or a value of the wrong kind.
    """
    merged = dict(lesson.defaults)
    for key, value in params.items():
        if key not in lesson.defaults:
            raise TransferLabError(
                f"Received `{key}={value}`; {lesson.name} takes: {', '.join(lesson.defaults)}."
            )
        default = lesson.defaults[key]
        try:
            if isinstance(default, bool):
                merged[key] = value if isinstance(value, bool) else str(value).lower() in (
                    "1", "true", "yes", "on")
            elif default is None or isinstance(default, str):
                merged[key] = None if str(value).lower() in ("", "none") else str(value)
            else:
                merged[key] = type(default)(value)
        except (TypeError, ValueError) as e:
            raise TransferLabError(
                f"Received `{key}={value}`; {lesson.name} expects a {type(default).__name__}."
            ) from e
    return merged
