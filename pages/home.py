"""Home / Learn: what transfer learning is, the workflow, and where this session stands."""

from __future__ import annotations

import streamlit as st

from lib.plots.workflow import make_workflow_figure
from lib.ui import navigation, state
from lib.uploads import display_name

LESSON = """
**Transfer learning** reuses a network that already learned to see from over a million ImageNet
photos. Its **lower layers are general** (edges, colours, textures) and its **top layers are
specific** to the 1000 ImageNet classes. So we:

1. **Freeze** the pretrained backbone, so its features stay as they are;
2. **add a new head** (pooling, optional dense layer, a softmax over *your* classes) and **train only
   the head**, which needs few images and minutes on a CPU;
3. optionally **fine-tune**: unfreeze the top layers and train on at a **learning rate about 10×
   lower**, so the good features are adjusted, not wrecked.
"""

WHEN_IT_FAILS = """
**When it fails.** *Too little data* (a handful of images per class) lets even a small head
memorise; use augmentation, a smaller head, and watch the validation curve. *A different domain*
(X-rays, satellite or microscope images, spectrograms) makes ImageNet's top-layer features less
useful: cut the backbone lower, where the features are more general, and fine-tune more layers.
*Fine-tuning too early or too fast* (a large learning rate on an untrained head) destroys the
pretrained features: train the head first, then fine-tune at a low rate.
"""


def session_steps() -> set[str]:
    """Workflow steps this session has done, as keys of `WORKFLOW_STEPS`."""
    done = {"backbone"}  # a backbone is always selected (the default one)
    if state.current_data_spec():
        done.add("data")
    if state.get_result(state.TRAIN_RESULT) is not None:
        done |= {"head", "train"}
    if state.get_result(state.FINETUNE_RESULT) is not None:
        done.add("fine_tune")
    return done


DONE_ICON = ":material/check_circle:"
TODO_ICON = ":material/radio_button_unchecked:"


def next_steps_section(done: set[str]) -> None:
    """One button per step; the icon ticks the steps this session has done."""
    st.subheader("Where you are")
    icon = lambda key: DONE_ICON if key in done else TODO_ICON  # noqa: E731
    steps = [
        (navigation.ZOO, f"Backbone: {state.current_backbone_name()} (model zoo)",
         icon("backbone")),
        (navigation.DATA, f"Data: {display_name(state.current_data_spec()) or 'none yet'}",
         icon("data")),
        (navigation.TRAIN, "Train a head on the frozen backbone", icon("train")),
        (navigation.FINE_TUNE, "Fine-tune the top layers", icon("fine_tune")),
        (navigation.PREDICT, "Predict on your own photos (or with a saved run)", None),
        (navigation.INSIDE_ATTACK, "Look inside the network: adversarial examples", None),
        (navigation.INSIDE_IDEAL, "Look inside: the ideal image of a class", None),
        (navigation.INSIDE_GRADCAM, "Look inside: where the evidence is (Grad-CAM)", None),
        (navigation.RUNS, "Compare runs and download models", None),
    ]
    for page, label, step_icon in steps:
        navigation.page_link(page, label=label, icon=step_icon)


st.title("TransferLab")
st.caption("Transfer learning for images, in the browser.")
if state.get_result(state.TRAIN_RESULT) is None:
    st.info("New here? Choose your data (a built-in set, or a zip of one folder per class), then "
            "train a head on it: the steps under **Where you are** take you through each page.")
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(LESSON)
    st.markdown(WHEN_IT_FAILS)
done_steps = session_steps()
with right:
    next_steps_section(done_steps)
st.subheader("The workflow")
st.plotly_chart(make_workflow_figure(done_steps), width="stretch",
                config={"displayModeBar": False, "staticPlot": True})
