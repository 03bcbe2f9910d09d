"""Lessons: one screen per lesson (a few paragraphs, one live run on real images, what to notice,
a question), and a presenter mode for a projector.

The URL holds the lesson's state, so a teacher can bookmark a prepared lesson:
`?lesson=NAME&step=N&present=1&seed=S` plus the lesson's choices (`photo`, `eps`).
The computations are `lib.lessons` (the same as `python -m lib lessons run`); each lesson's live
part is a view in `lib.ui.lessons`.
"""

from __future__ import annotations

import streamlit as st

from lib.errors import TransferLabError
from lib.lessons import Lesson, get_lesson, list_lessons
from lib.ui import state
from lib.ui.lessons import LIVE_VIEWS
from lib.ui.lessons.common import set_url, url_value

STEPS = ("The idea", "Try it", "What to notice", "Question")
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


# ----- the lesson's screen -------------------------------------------------------------------------


def live_part(lesson: Lesson, interactive: bool) -> None:
    """The lesson's live run; a user error is shown, not raised."""
    try:
        LIVE_VIEWS[lesson.name](lesson, interactive)
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
