"""Look inside · Ideal image: start from noise and change the image until the network sees a class.

Widgets in, `lib.inside.ideal` in background jobs (`lib.inside.jobs` specs, run wherever the
server runs jobs), images and figures from `lib.plots.inside` out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from lib.errors import TransferLabError
from lib.inside.display import png_bytes
from lib.inside.ideal import IdealSettings
from lib.inside.jobs import compare_spec, ideal_spec
from lib.inside.probe import layer_names_with_maps
from lib.plots.inside import make_ideal_curve_figure, make_transfer_figure
from lib.ui import resources, state
from lib.ui.inside import InsideModel, class_index, class_options, header, submit_inside_job
from lib.ui.jobs import finished_note, job_panel

LITE_FAMILY = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ESPRESSO = 967  # the default ImageNet class: its ideal image is recognisable at once
MAX_GALLERY = 12
INTRO = ("Start from noise and change the image until the network sees the class. Without a "
         "penalty the result is coloured noise that convinces only this network; total variation "
         "and random jitter make patterns that other networks recognise too.")


def objective_ui(probe) -> dict:
    """A class logit, or one channel of a feature-map layer.

    Returns:
        `{"class_index", "layer", "channel", "label"}` (class_index None for a channel).
    """
    kind = st.radio("Maximise", ["A class", "A channel of a layer"], horizontal=True,
                    key="inside_ideal_kind")
    if kind == "A class":
        default = ESPRESSO if probe.num_classes == 1000 else 0
        option = st.selectbox("Class (type to search)", class_options(probe), index=default,
                              key="inside_ideal_class")
        index = class_index(option)
        return {"class_index": index, "layer": None, "channel": None, "label": probe.labels[index]}
    layers = layer_names_with_maps(probe.model)
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", layers[::-1], key="inside_ideal_layer")
    width = int(probe.layer_model(layer).outputs[0].shape[-1])
    channel = c2.number_input(f"Channel (0-{width - 1})", 0, width - 1, 0, key="inside_ideal_channel")
    return {"class_index": None, "layer": layer, "channel": int(channel),
            "label": f"{layer} channel {int(channel)}"}


def settings_ui(probe) -> IdealSettings:
    """Steps, TV weight, jitter, size, and the advanced regularisers."""
    d = IdealSettings()
    c1, c2, c3, c4 = st.columns(4)
    steps = c1.slider("Steps", 10, 500, d.steps, 10, key="inside_ideal_steps")
    tv = c2.number_input("TV weight", 0.0, 1000.0, d.tv_weight, 10.0, key="inside_ideal_tv",
                         help="Total variation penalises neighbouring-pixel differences: smoother, "
                              "more recognisable images.")
    jitter = c3.slider("Jitter (pixels)", 0, 48, d.jitter, key="inside_ideal_jitter")
    sizes = sorted({probe.input_size, 128, 224, 320, 400})
    size = c4.selectbox("Image size", sizes, index=sizes.index(probe.input_size),
                        key="inside_ideal_size")
    with st.expander("More regularisers"):
        a1, a2, a3 = st.columns(3)
        scale = a1.slider("Random scale ±", 0.0, 0.5, d.scale, 0.05, key="inside_ideal_scale")
        rotation = a2.slider("Random rotation ± (degrees)", 0.0, 45.0, d.rotation, 1.0,
                             key="inside_ideal_rotation")
        l2 = a3.number_input("L2 decay weight", 0.0, 100.0, d.l2_weight, 0.5, key="inside_ideal_l2")
        b1, b2, b3 = st.columns(3)
        blur_every = b1.number_input("Blur every N steps (0 = off)", 0, 100, d.blur_every,
                                     key="inside_ideal_blur")
        param = b2.radio("Parameterisation", ["fft", "pixels"], key="inside_ideal_param",
                         format_func={"fft": "Fourier + decorrelated colour (Lucid)",
                                      "pixels": "Raw pixels"}.get)
        seed = b3.number_input("Seed", 0, 10_000, 0, key="inside_ideal_seed")
    return replace(d, steps=int(steps), tv_weight=float(tv), jitter=int(jitter), size=int(size),
                   scale=float(scale), rotation=float(rotation), l2_weight=float(l2),
                   blur_every=int(blur_every), parameterization=param, seed=int(seed),
                   learning_rate=d.learning_rate if param == "fft" else 0.01)


def transfer_names(name: str | None) -> list[str]:
    """The other EfficientNet-Lite models, for the transfer figures (only for a Lite backbone)."""
    return [other for other in LITE_FAMILY if other != name] if name in LITE_FAMILY else []


def transfer_probes(name: str | None) -> dict:
    """Probes of the other EfficientNet-Lite models that have their weights here."""
    return {other: resources.get_backbone_probe(other) for other in transfer_names(name)
            if resources.get_backbone(other).pretrained}


def live_view(snap: dict) -> None:
    """The image evolving and its probability curve, drawn by the job panel while the job runs.

    The job records each step (`prob`, `objective`) and each frame it saved (`frame`, a PNG in
    its folder) as rows of its progress events."""
    rows = snap["events"].get("batch", [])
    frames, steps = [r for r in rows if "frame" in r], [r for r in rows if "prob" in r]
    left, right = st.columns([1, 2])
    if frames:
        left.image(frames[-1]["frame"], caption=f"step {frames[-1]['step']}", width="stretch")
    if steps:
        right.plotly_chart(make_ideal_curve_figure([s["prob"] for s in steps],
                                                   [s["objective"] for s in steps]),
                           key="inside_ideal_live_curve")


def ideal_result_ui(result, label: str) -> None:
    left, right = st.columns([1, 2])
    if result.class_index is not None:
        caption, probs = f"{label}: p = {result.prob:.2f}", result.probs
    else:  # a channel has no class probability per step
        caption, probs = f"{label}: top class p = {result.prob:.2f}", [0.0] * len(result.objective)
    left.image(result.image.astype(np.uint8), width="stretch",
               caption=f"{caption} after {result.steps} steps ({result.seconds:.1f} s)")
    right.plotly_chart(make_ideal_curve_figure(probs, result.objective), key="inside_ideal_curve")
    left.download_button("Download PNG", png_bytes(result.image),
                         file_name=f"ideal_{label.replace(' ', '_')}.png", mime="image/png",
                         key="inside_ideal_download", icon=":material/download:")


def compare_result_ui(out: dict) -> None:
    """Plain ascent, your settings with TV 0, and yours: images, total variation, transfer."""
    cols = st.columns(len(out))
    rows = []
    for col, item in zip(cols, out.values(), strict=True):
        result = item["result"]
        transfer = ", ".join(f"{m.replace('efficientnet_', '')} {p:.2f}"
                             for m, p in item["transfer"].items())
        col.image(result.image.astype(np.uint8), width="stretch",
                  caption=f"{item['name']}: p = {result.prob:.2f} here; total variation "
                          f"{item['total_variation']:.3f}" + (f"; {transfer}" if transfer else ""))
        rows.append({"setting": item["name"], "model": "this model", "prob": result.prob})
        rows += [{"setting": item["name"], "model": m.replace("efficientnet_", ""), "prob": p}
                 for m, p in item["transfer"].items()]
    st.plotly_chart(make_transfer_figure(rows, title="Probability of the class, per model"),
                    key="inside_compare_transfer")
    st.caption("Plain gradient ascent (raw pixels, no penalty, no jitter) convinces only the network "
               "that made it: coloured noise. Models that did not make the image (other "
               "EfficientNet-Lite sizes, each at its own input size) stand in for a person: when "
               "they also see the class, the image holds the class's patterns. Total variation "
               "makes the image smoother (lower total variation).")


def gallery_ui() -> None:
    items = state.gallery()
    if not items:
        return
    st.subheader("This session's ideal images")
    cols = st.columns(4)
    for i, item in enumerate(items):
        r = item["result"]
        cols[i % 4].image(r.image.astype(np.uint8), width="stretch",
                          caption=f"{item['label']} · p {r.prob:.2f} · TV {r.settings.tv_weight:g}")


def buttons_ui(chosen: InsideModel, objective: dict, settings: IdealSettings) -> None:
    """Generate, and compare TV 0 with the chosen weight (for a class only)."""
    probe = chosen.probe
    c1, c2 = st.columns(2)
    if c1.button("Generate", type="primary", icon=":material/auto_awesome:", key="inside_ideal_run",
                 disabled=state.job_running(state.INSIDE_IDEAL_JOB)):
        submit_inside_job(state.INSIDE_IDEAL_JOB, ideal_spec(chosen.ref, objective, settings),
                          lambda: {"probe": probe})
    if c2.button(f"Compare TV 0 with TV {settings.tv_weight:g} (and plain ascent)",
                 icon=":material/compare:", key="inside_compare_run",
                 disabled=objective["class_index"] is None
                 or state.job_running(state.INSIDE_COMPARE_JOB)):
        spec = compare_spec(chosen.ref, objective["class_index"], settings,
                            transfer_names(chosen.backbone))
        try:
            submit_inside_job(state.INSIDE_COMPARE_JOB, spec,
                              lambda: {"probe": probe, "others": transfer_probes(chosen.backbone)})
        except TransferLabError as e:
            st.error(str(e))


def results_ui() -> None:
    """The live panels of running jobs, what finished ones left, and the gallery."""
    if state.job_running(state.INSIDE_IDEAL_JOB):
        job_panel(state.INSIDE_IDEAL_JOB, "Ideal image", live=live_view)
    elif (snap := finished_note(state.INSIDE_IDEAL_JOB)) is not None and snap["result"] is not None:
        state.remember_ideal(snap["result"]["result"], snap["result"]["label"], MAX_GALLERY)
        ideal_result_ui(snap["result"]["result"], snap["result"]["label"])
    if state.job_running(state.INSIDE_COMPARE_JOB):
        job_panel(state.INSIDE_COMPARE_JOB, "TV comparison")
    elif (snap := finished_note(state.INSIDE_COMPARE_JOB)) is not None and snap["result"]:
        st.subheader("TV weight 0 vs yours, and plain gradient ascent")
        compare_result_ui(snap["result"])
    gallery_ui()


chosen = header("Ideal image", INTRO)
try:
    chosen_objective = objective_ui(chosen.probe)
except TransferLabError as e:
    st.error(str(e))
    st.stop()
buttons_ui(chosen, chosen_objective, settings_ui(chosen.probe))
results_ui()
