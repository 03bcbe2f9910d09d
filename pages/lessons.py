"""Lessons: one screen per lesson (a few paragraphs, one live run on real images, what to notice,
a question), and a presenter mode for a projector.

The URL holds the lesson's state, so a teacher can bookmark a prepared lesson:
`?lesson=NAME&step=N&present=1&seed=S` plus the lesson's choices (`photo`, `eps`).
The computations are `lib.lessons` (the same as `python -m lib lessons run`); models come from the
server's shared cache.
"""

from __future__ import annotations

import streamlit as st

from lib.errors import TransferLabError
from lib.lessons import Lesson, Models, get_lesson, lesson_backbones, list_lessons
from lib.lessons.adversarial import EPS_CHOICES, TARGET
from lib.lessons.features import PHOTOS
from lib.lessons.ideal import ESPRESSO, KINDS
from lib.ui import resources, state

STEPS = ("The idea", "Try it", "What to notice", "Question")
PHOTO_NAMES = {"chelsea": "Chelsea the cat", "coffee": "A cup of coffee", "astronaut": "An astronaut"}
PRESENTER_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="collapsedControl"], header[data-testid="stHeader"] { display: none; }
.block-container, [data-testid="stMainBlockContainer"] { max-width: 1280px; padding-top: 1.5rem; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.7rem;
  line-height: 1.45; }
h1 { font-size: 3.2rem !important; }
h3 { font-size: 2.2rem !important; }
[data-testid="stCaptionContainer"] { font-size: 1.2rem; }
</style>
"""


# ----- URL state -----------------------------------------------------------------------------------


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


def run_cached(lesson: Lesson, *, with_progress: bool = False, **params) -> dict:
    """Runs a lesson once per session and choice of parameters (Next/Back redraw, not recompute).

    Args:
        lesson: the lesson.
        with_progress: draw a progress bar from the run's `on_progress` (a long step).
        **params: the run's parameters (the cache key).
    """
    results = state.lesson_results()
    key = (lesson.name, tuple(sorted(params.items())))
    if key not in results:
        extra = {}
        if with_progress:
            bar = st.progress(0.0, text=f"Starting… ({lesson.timing})")
            extra["on_progress"] = lambda done, total, message: bar.progress(
                done / max(total, 1), text=message)
        with st.spinner(f"Computing… ({lesson.timing})"):
            results[key] = lesson.run(lesson_models(), **params, **extra)
    return results[key]


def cached_result(lesson: Lesson, **params) -> dict | None:
    """A result computed earlier in this session, or None."""
    key = (lesson.name, tuple(sorted(params.items())))
    return state.lesson_results().get(key)


# ----- the lessons' live parts ---------------------------------------------------------------------


def photo_choice(lesson: Lesson, interactive: bool) -> str:
    """The photo, from the URL; a picker when `interactive`."""
    photo = url_value("photo", "chelsea", str)
    photo = photo if photo in PHOTOS else "chelsea"
    if interactive:
        photo = st.segmented_control("Photo", PHOTOS, default=photo, format_func=PHOTO_NAMES.get,
                                     key=f"lessons_{lesson.name}_photo") or photo
        set_url(photo=photo)
    return photo


def features_ui(lesson: Lesson, interactive: bool) -> None:
    backbone, _ = lesson_backbones()
    photo = photo_choice(lesson, interactive)
    result = run_cached(lesson, backbone=backbone, photo=photo, channels=8)
    numbers, images = result["numbers"], result["images"]
    left, right = st.columns([1, 2])
    left.image(images["photo"], caption=PHOTO_NAMES[photo], width="stretch")
    right.plotly_chart(result["figures"]["top5"], key=f"lessons_features_top5_{interactive}")
    columns = st.columns(3)
    for column, cut in zip(columns, numbers["cuts"], strict=True):
        column.markdown(f"**{cut['role'].capitalize()}** · `{cut['layer']}`")
        column.image(images[f"maps_{cut['role']}"], width="stretch")
        column.caption(f"{cut['height']}×{cut['width']} pixels, {cut['channels']} channels "
                       "(the 8 most active shown)")


def adversarial_ui(lesson: Lesson, interactive: bool) -> None:
    backbone, _ = lesson_backbones()
    probe = resources.get_backbone_probe(backbone)
    target = TARGET if probe.num_classes == 1000 else None
    photo = photo_choice(lesson, interactive)
    eps = url_value("eps", 2.0, float)
    eps = eps if eps in EPS_CHOICES else 2.0
    if interactive:
        eps = st.select_slider("ε: the most any pixel may change (0–255 scale)", EPS_CHOICES,
                               value=eps, key="lessons_adversarial_eps")
        set_url(eps=eps)
    result = run_cached(lesson, backbone=backbone, photo=photo, eps=float(eps), steps=10,
                        target=target)
    numbers, images = result["numbers"], result["images"]
    columns = st.columns(3)
    before, after = numbers["before"], numbers["after"]
    columns[0].image(images["original"], width="stretch",
                     caption=f"Original: {before['label']} ({before['prob']:.0%})")
    columns[1].image(images["adversarial"], width="stretch",
                     caption=f"Adversarial: {after['label']} ({after['prob']:.0%})")
    columns[2].image(images["perturbation"], width="stretch",
                     caption=f"The change, amplified {numbers['gain']:.0f}×")
    verdict = "changed its answer" if numbers["success"] else "kept its answer"
    st.markdown(f"The network **{verdict}**: largest pixel change {numbers['linf']:g} of 255 "
                f"(ε = {numbers['eps']:g}).")
    st.plotly_chart(result["figures"]["topk"], key=f"lessons_adversarial_topk_{interactive}")


def ideal_ui(lesson: Lesson, interactive: bool) -> None:
    backbone, other = lesson_backbones()
    probe = resources.get_backbone_probe(backbone)
    class_index = ESPRESSO if probe.num_classes == 1000 else 0
    seed = url_value("seed", 0, int)
    if interactive:
        seed = int(st.number_input("Seed (a different random start)", 0, 99, value=seed,
                                   key="lessons_ideal_seed"))
        set_url(seed=seed)
    st.caption(f"Each image: {lesson.timing}.")
    columns = st.columns(2)
    titles = {"plain": "Plain gradient ascent", "regularised": "With total variation and jitter"}
    for column, kind in zip(columns, KINDS, strict=True):
        params = {"backbone": backbone, "other": other, "class_index": class_index, "steps": 200,
                  "seed": seed, "which": kind}
        with column:
            st.markdown(f"**{titles[kind]}**")
            result = cached_result(lesson, **params)
            if result is None and interactive and st.button(
                    f"Run: {titles[kind].lower()}", key=f"lessons_ideal_run_{kind}"):
                result = run_cached(lesson, with_progress=True, **params)
            if result is None:
                st.info("Not run yet." if interactive else "Run it on the previous step.")
                continue
            numbers = result["numbers"][kind]
            st.image(result["images"][kind], width="stretch")
            judge = ("" if numbers["other_backbone_prob"] is None else
                     f"; {other} (never saw it): **{numbers['other_backbone_prob']:.0%}**")
            st.markdown(f"{backbone}: **{numbers['prob']:.0%}** {result['numbers']['class']}"
                        f"{judge}. Total variation {numbers['total_variation']:.3f}.")


LIVE = {"features": features_ui, "adversarial": adversarial_ui, "ideal-image": ideal_ui}


# ----- the lesson's screen -------------------------------------------------------------------------


def live_part(lesson: Lesson, interactive: bool) -> None:
    """The lesson's live run; a user error is shown, not raised."""
    try:
        LIVE[lesson.name](lesson, interactive)
    except TransferLabError as e:
        st.error(str(e))


def show_step(lesson: Lesson, step: int, interactive: bool) -> None:
    """One of `STEPS`: the idea, the live run, what to notice (beside the result), the question."""
    if step == 0:
        for paragraph in lesson.paragraphs:
            st.markdown(paragraph)
    elif step == 1:
        live_part(lesson, interactive)
    elif step == 2:
        st.info("**What to notice**\n\n" + "\n".join(f"- {point}" for point in lesson.notice))
        if interactive is False:
            live_part(lesson, interactive=False)
    else:
        st.markdown(f"### {lesson.question}")
        shown = state.lesson_answers_shown()
        if st.button("Reveal the answer", key=f"lessons_reveal_{lesson.name}"):
            shown[lesson.name] = True
        if shown.get(lesson.name):
            st.success(lesson.answer)


def step_buttons(step: int) -> None:
    """Back and Next, which move the step in the URL."""
    back, where, forward = st.columns([1, 3, 1])
    back.button("← Back", disabled=step == 0, key="lessons_back",
                on_click=set_url, kwargs={"step": step - 1}, width="stretch")
    where.markdown(f"<div style='text-align:center'>Step {step + 1} of {len(STEPS)}: "
                   f"{STEPS[step]}</div>", unsafe_allow_html=True)
    forward.button("Next →", disabled=step == len(STEPS) - 1, key="lessons_next",
                   on_click=set_url, kwargs={"step": step + 1}, width="stretch")


def lesson_from_url(lessons: list[Lesson]) -> Lesson:
    """The lesson named in the URL; an unknown name is reported and falls back to the first."""
    name = url_value("lesson", lessons[0].name, str)
    try:
        lesson = get_lesson(name)
    except TransferLabError as e:
        st.error(str(e))
        lesson = lessons[0]
    set_url(lesson=lesson.name)
    return lesson


def choose_lesson(lessons: list[Lesson]) -> Lesson:
    """A lesson picker that starts at the URL's lesson and writes the choice back to the URL."""
    names = [lesson.name for lesson in lessons]
    current = lesson_from_url(lessons).name
    chosen = st.selectbox("Lesson", names, index=names.index(current),
                          format_func=lambda n: get_lesson(n).title, key="lessons_picker")
    if chosen != current:
        set_url(lesson=chosen, step=0)
    return get_lesson(chosen)


def page() -> None:
    lessons = list_lessons()
    present = url_value("present", "0", str) == "1"
    top = st.columns([3, 1])
    with top[1]:
        present = st.toggle("Presenter mode", value=present, key="lessons_present",
                            help="Large type, no sidebar, one step at a time (Next/Back).")
        set_url(present=1 if present else None)
    if present:
        st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
        lesson = lesson_from_url(lessons)  # the picker is a setting: hidden while presenting
    else:
        with top[0]:
            lesson = choose_lesson(lessons)
    st.title(lesson.title)
    if not present:
        st.info("Pick a lesson above; each is one screen with a live run on real images. To "
                "project it, click **Presenter mode**: large type, one step at a time.")
        st.caption(f"Lesson `{lesson.name}` · link: `?lesson={lesson.name}` · the live step takes "
                   f"{lesson.timing} on 2 CPU cores.")
        for step in range(len(STEPS)):
            if step == 2:
                continue  # "what to notice" sits under the live run, not after a second copy
            show_step(lesson, step, interactive=True)
            if step == 1:
                show_step(lesson, 2, interactive=True)
        return
    step = min(max(url_value("step", 0, int), 0), len(STEPS) - 1)
    set_url(step=step)
    step_buttons(step)
    # On "what to notice" the result is drawn again beside the points, without its widgets.
    show_step(lesson, step, interactive=step != 2)


page()
