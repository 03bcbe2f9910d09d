"""Look inside · Adversarial examples: nudge a photo within ε until the network changes its mind.

Widgets in, `lib.inside.attacks` in background jobs (`lib.inside.jobs` specs, run wherever the
server runs jobs), figures from `lib.plots.inside` out.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from lib.errors import TransferLabError
from lib.inside.attacks import DEFAULT_MARGIN, sample_dataset
from lib.inside.display import SAMPLES, amplify_perturbation, png_bytes, sample_image
from lib.inside.jobs import attack_spec, sweep_spec
from lib.plots.inside import (
    make_min_eps_figure,
    make_robustness_figure,
    make_topk_comparison_figure,
)
from lib.ui import state
from lib.ui.choosers import image_chooser, session_dataset
from lib.ui.inside import (
    InsideModel,
    class_index,
    class_options,
    header,
    stored_pixels,
    submit_inside_job,
)
from lib.ui.jobs import finished_note, job_panel

# Budgets of the ε sweep per norm, in pixel units; 0 is the clean baseline (clean accuracy).
SWEEP_EPS = {"linf": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
             "l2": (0.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)}
SWEEP_IMAGES = 12
NORM_NAMES = {"linf": "L∞", "l2": "L2"}
NO_TARGET = "(untargeted: any other class)"
INTRO = "Nudge a photo, within ε pixel units, until the network changes its mind."
SUCCESS_MEANS = (
    "**Success** is judged on the image you download: the adversarial image rounded to whole "
    "pixels and kept inside the ε budget. Untargeted, it succeeds when the model no longer gives "
    "the original class; targeted, when the target becomes its top class. PGD keeps going until "
    "the goal leads the runner-up by the **confidence margin** (in probability), or the steps "
    "run out, so a success is not a coin toss at the decision boundary."
)
TRUE_LABELS, CLEAN_PREDICTIONS = "true labels", "clean predictions"


def attack_settings_ui(probe) -> dict:
    """Method, norm, eps (pixel units), steps, random start and target."""
    c1, c2, c3 = st.columns(3)
    method = c1.radio("Method", ["pgd", "fgsm"], horizontal=True, key="inside_method",
                      format_func={"pgd": "PGD (iterative)", "fgsm": "FGSM (one step)"}.get)
    norm = c2.radio("Norm", ["linf", "l2"], horizontal=True, key="inside_norm",
                    format_func={"linf": "L∞", "l2": "L2"}.get)
    steps = c3.slider("Steps", 1, 100, 10, key="inside_steps", disabled=method == "fgsm")
    if norm == "linf":
        eps = st.slider("ε: the most any pixel may change, in pixel units (0-255)", 0.5, 32.0, 4.0,
                        0.5, key="inside_eps_linf")
    else:
        eps = st.slider("ε: the L2 length of the whole change, in pixel units", 10.0, 3000.0, 400.0,
                        10.0, key="inside_eps_l2")
    target = st.selectbox("Target class (type to search)", [NO_TARGET] + class_options(probe),
                          key="inside_target")
    margin = st.slider("Confidence margin: how far the goal must lead the runner-up (probability)",
                       0.0, 0.9, DEFAULT_MARGIN, 0.05, key="inside_margin",
                       disabled=method == "fgsm",
                       help="PGD stops moving an image once the saved image reaches its goal by "
                            "this much; 0 stops at the first change of the prediction.")
    random_init = st.checkbox("Random start inside the ε-ball", key="inside_random_start",
                              disabled=method == "fgsm")
    st.caption(SUCCESS_MEANS)
    return {"method": method, "norm": norm, "eps": float(eps), "steps": int(steps),
            "target": None if target == NO_TARGET else class_index(target),
            "random_init": bool(random_init), "margin": float(margin)}


def sweep_images(probe) -> tuple[np.ndarray, list[int] | None, str]:
    """Up to SWEEP_IMAGES images from the session's dataset (with their true labels when the
    dataset's classes are the model's), else the built-in samples (no labels).

    Returns:
        `(images, labels or None, what they are)`.
    """
    dataset = session_dataset()
    size = probe.input_size
    if dataset is not None:
        images, labels = sample_dataset(dataset, SWEEP_IMAGES, size, probe.labels)
        return images, labels, f"{len(images)} images of {dataset.name}"
    images = np.stack([sample_image(n, size) for n in SAMPLES])
    return images, None, f"the {len(SAMPLES)} built-in samples"


def attack_result_ui(result) -> None:
    """Original | amplified perturbation | adversarial, then top-5 before and after."""
    amplified, gain = amplify_perturbation(result.perturbation)
    c1, c2, c3 = st.columns(3)
    c1.image(result.original.astype(np.uint8), caption=f"Original: {result.before[0]['label']} "
             f"({result.before[0]['prob']:.0%})", width="stretch")
    c2.image(amplified, caption=f"Perturbation × {gain:.0f} (grey = 0; L∞ {result.linf:.1f}, "
             f"L2 {result.l2:.0f} pixel units)", width="stretch")
    c3.image(result.adversarial.astype(np.uint8), caption=f"Adversarial: {result.after[0]['label']} "
             f"({result.after[0]['prob']:.0%})", width="stretch")
    goal = "reach the target" if result.target is not None else "change the prediction"
    verdict = "succeeded" if result.success else "did not succeed"
    st.markdown(f"**{result.method.upper()} {verdict}** to {goal} in {result.steps} step(s), "
                f"ε = {result.eps:g} ({NORM_NAMES[result.norm]}).")
    st.markdown(final_probability_text(result))
    st.plotly_chart(make_topk_comparison_figure(result.before, result.after, result.target),
                    key="inside_attack_topk")
    st.download_button("Download the adversarial PNG", png_bytes(result.adversarial),
                       file_name="adversarial.png", mime="image/png", key="inside_attack_download",
                       icon=":material/download:")


def final_probability_text(result) -> str:
    """The downloaded image's probabilities: the goal class before and after, and the margin."""
    after = result.after[0]
    if result.target is not None:
        name = next((t["label"] for t in [*result.after, *result.before]
                     if t["index"] == result.target), f"class {result.target}")
        goal = f"the target `{name}`"
        line = (f"Final probability of {goal}: **{result.target_prob_after:.1%}** "
                f"(before: {result.target_prob_before:.1%}); top class now `{after['label']}` "
                f"at {after['prob']:.1%}.")
    else:
        line = (f"Final probability of the original class `{result.before[0]['label']}`: "
                f"**{result.target_prob_after:.1%}** (before: {result.target_prob_before:.1%}); "
                f"top class now `{after['label']}` at **{after['prob']:.1%}**.")
    if result.method == "pgd":
        line += (f" Margin {result.margin:.0%} " + ("reached." if result.margin_reached else
                                                     "not reached within the steps."))
    return line


def sweep_result_ui(sweep, reference: str, norm: str) -> None:
    """Robust accuracy and success rate against ε, the smallest ε that flips each image, and
    the final probabilities per ε."""
    left, right = st.columns(2)
    left.plotly_chart(make_robustness_figure(sweep.eps, sweep.robust_accuracy, sweep.success_rate,
                                             title=f"Robust accuracy against ε ({NORM_NAMES[norm]})"),
                      key="inside_sweep_curve")
    right.plotly_chart(make_min_eps_figure(sweep.min_eps, sweep.eps), key="inside_sweep_min")
    if reference == TRUE_LABELS:
        st.caption("Robust accuracy: the share of images still given their **true label** after "
                   "the attack (at ε = 0, the clean accuracy). Success: the attacked image is "
                   "misclassified.")
    else:
        st.caption("Robust accuracy here: the share of images still given their **clean "
                   "prediction** after the attack (the images have no labels the model knows: "
                   "use a dataset the model was trained on for accuracy against true labels).")
    st.dataframe([{"ε": e, "robust accuracy": r, "success rate": s, "mean top-1 probability": c}
                  for e, r, s, c in zip(sweep.eps, sweep.robust_accuracy, sweep.success_rate,
                                        sweep.mean_confidence, strict=False)],
                 hide_index=True, key="inside_sweep_table", column_config={
                     name: st.column_config.NumberColumn(format="percent")
                     for name in ("robust accuracy", "success rate", "mean top-1 probability")})


def buttons_ui(chosen: InsideModel, image: np.ndarray | None, settings: dict) -> None:
    """Attack (one image) and ε sweep (a dozen images) buttons."""
    probe = chosen.probe
    c1, c2 = st.columns(2)
    if c1.button("Attack", type="primary", icon=":material/bolt:", key="inside_attack_run",
                 disabled=image is None or state.job_running(state.INSIDE_ATTACK_JOB)):
        if (path := stored_pixels(image)) is not None:
            submit_inside_job(state.INSIDE_ATTACK_JOB, attack_spec(chosen.ref, path, settings),
                              lambda: {"probe": probe})
    grid = SWEEP_EPS[settings["norm"]]
    if c2.button(f"ε sweep ({NORM_NAMES[settings['norm']]}, ε = {', '.join(f'{e:g}' for e in grid)})",
                 icon=":material/show_chart:", key="inside_sweep_run",
                 disabled=state.job_running(state.INSIDE_SWEEP_JOB)):
        try:
            images, labels, what = sweep_images(probe)
        except TransferLabError as e:
            st.error(str(e))
        else:
            if (path := stored_pixels(images)) is None:
                return
            reference = TRUE_LABELS if labels is not None else CLEAN_PREDICTIONS
            state.put(state.INSIDE_SWEEP_WHAT, {"what": what, "reference": reference,
                                                "norm": settings["norm"]})
            submit_inside_job(state.INSIDE_SWEEP_JOB,
                              sweep_spec(chosen.ref, path, list(grid), labels, settings),
                              lambda: {"probe": probe})


def results_ui() -> None:
    """The live panels of running jobs, or what finished ones left (or what to do first)."""
    if all(state.get(key) is None for key in (state.INSIDE_ATTACK_JOB, state.INSIDE_SWEEP_JOB)):
        st.info("Pick an image above and press **Attack**, or press **ε sweep** to measure "
                "robust accuracy over a dozen images.")
        return
    if state.job_running(state.INSIDE_ATTACK_JOB):
        job_panel(state.INSIDE_ATTACK_JOB, "Attack")
    elif (snap := finished_note(state.INSIDE_ATTACK_JOB)) is not None and snap["result"] is not None:
        attack_result_ui(snap["result"])
    if state.job_running(state.INSIDE_SWEEP_JOB):
        job_panel(state.INSIDE_SWEEP_JOB, "ε sweep")
    elif (snap := finished_note(state.INSIDE_SWEEP_JOB)) is not None and snap["result"] is not None:
        about = state.get(state.INSIDE_SWEEP_WHAT) or {}
        reference = about.get("reference", CLEAN_PREDICTIONS)
        st.subheader(f"ε sweep over {about.get('what', 'the images')}, against their {reference}")
        sweep_result_ui(snap["result"], reference, about.get("norm", "linf"))


chosen = header("Adversarial examples", INTRO)
picked, _ = image_chooser("inside_attack", chosen.probe.input_size)
attack_settings = attack_settings_ui(chosen.probe)
buttons_ui(chosen, picked, attack_settings)
results_ui()
