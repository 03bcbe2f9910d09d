"""Look inside: adversarial examples, ideal class images and Grad-CAM, on ImageNet or your model.

Widgets in, `lib.inside` calls in background jobs, figures from `lib.plots.inside` out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from lib import ui_state
from lib.errors import TransferLabError
from lib.images import load_image
from lib.inside.attacks import attack, eps_sweep
from lib.inside.display import SAMPLES, amplify_perturbation, png_bytes, sample_image
from lib.inside.gradcam import colorize, gradcam
from lib.inside.ideal import IdealSettings, compare_tv, ideal_image
from lib.inside.probe import ModelProbe, layer_names_with_maps
from lib.jobs import Job, format_seconds, start_job
from lib.plots.inside import (
    make_ideal_curve_figure,
    make_min_eps_figure,
    make_robustness_figure,
    make_topk_comparison_figure,
    make_transfer_figure,
)
from lib.plots.ui import make_topk_figure

TRAINED = "This session's trained model"
IMAGENET = "ImageNet classifier of the backbone"
LITE_FAMILY = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
LIVE_REFRESH_S = 1.0
# The ideal image's live view redraws a picture and a chart; every 1.5 s keeps the job's share of
# the CPU high.
IDEAL_REFRESH_S = 1.5
MAX_PROBES = 3
MAX_GALLERY = 12
SWEEP_EPS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SWEEP_IMAGES = 12
NO_TARGET = "(untargeted: any other class)"
PREDICTED = "(the predicted class)"
# Session keys (namespaced "inside_").
ATTACK_JOB, SWEEP_JOB = "inside_attack_job", "inside_sweep_job"
IDEAL_JOB, COMPARE_JOB, CAM_JOB = "inside_ideal_job", "inside_compare_job", "inside_cam_job"
PROBES, GALLERY = "inside_probes", "inside_gallery"
JOB_KEYS = (ATTACK_JOB, SWEEP_JOB, IDEAL_JOB, COMPARE_JOB, CAM_JOB)


# ----- model and images ------------------------------------------------------------------------------


def model_choice_ui() -> str:
    """Which model to look inside; the trained one when there is one."""
    options = [IMAGENET, TRAINED] if ui_state.trained_model() is not None else [IMAGENET]
    choice = st.radio("Model", options, horizontal=True, key="inside_model")
    if ui_state.trained_model() is None:
        st.caption("No trained model in this session yet, so the backbone's 1000 ImageNet classes "
                   "are used.")
    return choice


def probe_for(model, labels, key: tuple) -> ModelProbe:
    """This session's probe for its trained model, kept so its compiled steps are traced once.

    Backbone probes are shared by all sessions instead (`ui_state.get_backbone_probe`).
    """
    probes: dict = ui_state.get(PROBES) or {}
    if key not in probes:
        probes = dict(list(probes.items())[-(MAX_PROBES - 1):])
        probes[key] = ModelProbe(model, labels)
        ui_state.put(PROBES, probes)
    return probes[key]


def load_probe(choice: str) -> tuple[ModelProbe, str, str | None]:
    """Returns `(probe, description, backbone_name)`; the name is None for a trained model.

    Raises:
        TransferLabError: the backbone has no ImageNet classifier.
    """
    if choice == TRAINED and ui_state.trained_model() is not None:
        model, labels = ui_state.trained_model()
        return (probe_for(model, labels, ("trained", id(model))),
                f"your model ({len(labels)} classes)", None)
    name = ui_state.current_backbone_name()
    backbone = ui_state.get_backbone(name)
    classes = backbone.spec.num_classes
    if classes <= 0:
        raise TransferLabError(f"{name} has no classifier (it outputs features); train a head on "
                               "it first.")
    if not backbone.pretrained:
        st.warning(f"{name} has random weights here: what you see inside it is meaningless.")
    probe = ui_state.get_backbone_probe(name)
    what = "ImageNet's 1000 classes" if classes == 1000 else f"its {classes} classes"
    return probe, f"{name} on {what}", name


def dataset_records():
    """The session's dataset records and class names, or None when there is no readable dataset."""
    try:
        dataset = ui_state.current_dataset()
    except TransferLabError:
        return None
    if dataset is None or not dataset.records:
        return None
    return dataset


def image_picker_ui(prefix: str, size: int) -> tuple[np.ndarray | None, str]:
    """Upload, a built-in sample, or an image of the session's dataset, at the model's size.

    Returns:
        `(pixels (size, size, 3) or None, caption)`.
    """
    dataset = dataset_records()
    sources = ["Built-in sample", "Upload"] + (["From the dataset"] if dataset else [])
    source = st.radio("Image", sources, horizontal=True, key=f"{prefix}_source")
    try:
        if source == "Upload":
            upload = st.file_uploader("Upload an image", key=f"{prefix}_upload",
                                      type=["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"])
            if upload is None:
                return None, ""
            return load_image(upload.getvalue(), size), upload.name
        if source == "From the dataset":
            names = list(dataset.class_names)
            cls = st.selectbox("Class", names, key=f"{prefix}_data_class")
            records = [r for r in dataset.records if r.label == names.index(cls)]
            n = st.number_input(f"Image (1-{len(records)})", 1, len(records), 1,
                                key=f"{prefix}_data_index")
            record = records[int(n) - 1]
            return load_image(record.path, size), f"{cls} #{int(n)}"
        name = st.selectbox("Sample", list(SAMPLES), key=f"{prefix}_sample")
        return sample_image(name, size), name
    except TransferLabError as e:
        st.error(str(e))
        return None, ""


def class_options(probe: ModelProbe) -> list[str]:
    return [f"{i}: {label}" for i, label in enumerate(probe.labels)]


def class_index(option: str) -> int:
    return int(option.split(":", 1)[0])


# ----- jobs ----------------------------------------------------------------------------------------------


def start(key: str, kind: str, target) -> None:
    """Starts a job under `key` unless one is running there, then reruns to show it."""
    job = ui_state.get_job(key)
    if job is not None and job.running:
        st.warning("That is still running; stop it first.")
        return
    ui_state.set_job(key, start_job(kind, target, slots=ui_state.job_slots()))
    st.rerun()


def stop_button(job: Job, snap: dict, key: str) -> None:
    if st.button("Stop", icon=":material/stop:", key=f"{key}_stop", disabled=snap["stopping"]):
        job.stop()
        st.rerun(scope="fragment")


def job_state(key: str) -> tuple[Job | None, dict | None]:
    job = ui_state.get_job(key)
    return (job, job.snapshot()) if job is not None else (None, None)


def finished_note(snap: dict | None) -> None:
    """An error or a stop note for a finished job."""
    if snap is None:
        return
    if snap["status"] == "failed":
        st.error(snap["error"])
    elif snap["status"] == "stopped":
        st.warning(f"Stopped after {format_seconds(snap['elapsed'])}; showing what was done.")


@st.fragment(run_every=LIVE_REFRESH_S)
def progress_fragment(key: str, title: str) -> None:
    """Progress and Stop for a running job; reruns the page when it ends."""
    job, snap = job_state(key)
    if job is None:
        return
    if snap["status"] != "running":
        st.rerun()
    running_job_ui(job, snap, key, title)


def running_job_ui(job, snap: dict, key: str, title: str) -> None:
    """A running job's progress bar (with ETA) and its Stop button."""
    eta = f" — about {format_seconds(snap['eta'])} left" if snap["eta"] else ""
    st.progress(snap["fraction"], text=f"{title}: {snap['message']}{eta}")
    stop_button(job, snap, key)


# ----- adversarial tab -------------------------------------------------------------------------------


def attack_settings_ui(probe: ModelProbe) -> dict:
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
    random_init = st.checkbox("Random start inside the ε-ball", key="inside_random_start",
                              disabled=method == "fgsm")
    return {"method": method, "norm": norm, "eps": float(eps), "steps": int(steps),
            "target": None if target == NO_TARGET else class_index(target),
            "random_init": bool(random_init)}


def attack_target(probe: ModelProbe, image: np.ndarray, settings: dict):
    def target(job: Job):
        def on_step(info):
            job.set_progress(info["step"], info["steps"], f"step {info['step']}/{info['steps']}")

        return attack(probe, image, stop_event=job.stop_event, on_step=on_step, **settings)
    return target


def sweep_images(probe: ModelProbe) -> tuple[np.ndarray, str]:
    """Up to SWEEP_IMAGES images from the session's dataset, else the built-in samples."""
    dataset = dataset_records()
    size = probe.input_size
    if dataset is not None:
        step = max(1, len(dataset.records) // SWEEP_IMAGES)
        records = dataset.records[::step][:SWEEP_IMAGES]
        return np.stack([load_image(r.path, size) for r in records]), f"{len(records)} dataset images"
    return np.stack([sample_image(n, size) for n in SAMPLES]), f"the {len(SAMPLES)} built-in samples"


def sweep_target(probe: ModelProbe, images: np.ndarray, settings: dict):
    def target(job: Job):
        return eps_sweep(probe, images, SWEEP_EPS, method=settings["method"],
                         steps=settings["steps"], norm="linf",
                         on_progress=lambda d, t, m: job.set_progress(d, t, m),
                         stop_event=job.stop_event)
    return target


def attack_result_ui(result, probe: ModelProbe) -> None:
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
                f"ε = {result.eps:g} ({'L∞' if result.norm == 'linf' else 'L2'}).")
    st.plotly_chart(make_topk_comparison_figure(result.before, result.after, result.target),
                    key="inside_attack_topk")
    st.download_button("Download the adversarial PNG", png_bytes(result.adversarial),
                       file_name="adversarial.png", mime="image/png", key="inside_attack_download",
                       icon=":material/download:")


def sweep_result_ui(sweep) -> None:
    left, right = st.columns(2)
    left.plotly_chart(make_robustness_figure(sweep.eps, sweep.robust_accuracy, sweep.success_rate,
                                             title="Robust accuracy against ε (L∞)"),
                      key="inside_sweep_curve")
    right.plotly_chart(make_min_eps_figure(sweep.min_eps, sweep.eps), key="inside_sweep_min")
    st.caption("Robust accuracy: the share of images still given their clean prediction after "
               "the attack.")


def adversarial_tab(probe: ModelProbe) -> None:
    st.write("Nudge a photo, within ε pixel units, until the network changes its mind.")
    image, caption = image_picker_ui("inside_attack", probe.input_size)
    settings = attack_settings_ui(probe)
    job, snap = job_state(ATTACK_JOB)
    sweep_job, sweep_snap = job_state(SWEEP_JOB)
    c1, c2 = st.columns(2)
    if c1.button("Attack", type="primary", icon=":material/bolt:", key="inside_attack_run",
                 disabled=image is None or (job is not None and job.running)):
        start(ATTACK_JOB, "attack", attack_target(probe, image, settings))
    if c2.button(f"ε sweep (ε = {', '.join(f'{e:g}' for e in SWEEP_EPS)})",
                 icon=":material/show_chart:", key="inside_sweep_run",
                 disabled=sweep_job is not None and sweep_job.running):
        try:
            images, what = sweep_images(probe)
        except TransferLabError as e:
            st.error(str(e))
        else:
            ui_state.put("inside_sweep_what", what)
            start(SWEEP_JOB, "eps sweep", sweep_target(probe, images, settings))
    if job is not None and job.running:
        progress_fragment(ATTACK_JOB, "Attack")
    elif snap is not None:
        finished_note(snap)
        if snap["result"] is not None:
            attack_result_ui(snap["result"], probe)
    if sweep_job is not None and sweep_job.running:
        progress_fragment(SWEEP_JOB, "ε sweep")
    elif sweep_snap is not None:
        finished_note(sweep_snap)
        if sweep_snap["result"] is not None:
            st.subheader(f"ε sweep over {ui_state.get('inside_sweep_what', 'the images')}")
            sweep_result_ui(sweep_snap["result"])


# ----- ideal image tab -------------------------------------------------------------------------------


def objective_ui(probe: ModelProbe) -> dict:
    """A class logit, or one channel of a feature-map layer.

    Returns:
        `{"class_index", "layer", "channel", "label"}` (class_index None for a channel).
    """
    kind = st.radio("Maximise", ["A class", "A channel of a layer"], horizontal=True,
                    key="inside_ideal_kind")
    if kind == "A class":
        default = 967 if probe.num_classes == 1000 else 0  # espresso
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


def ideal_settings_ui(probe: ModelProbe) -> IdealSettings:
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
    settings = replace(d, steps=int(steps), tv_weight=float(tv), jitter=int(jitter), size=int(size),
                       scale=float(scale), rotation=float(rotation), l2_weight=float(l2),
                       blur_every=int(blur_every), parameterization=param, seed=int(seed),
                       learning_rate=d.learning_rate if param == "fft" else 0.01)
    return settings


def ideal_target(probe: ModelProbe, objective: dict, settings: IdealSettings):
    def target(job: Job):
        def on_step(info):
            job.append("step", {"prob": info["prob"], "objective": info["objective"]})
            job.set_progress(info["step"], info["steps"], f"step {info['step']}/{info['steps']}")

        def on_frame(info):
            job.append("frame", {"step": info["step"], "image": info["image"]})

        result = ideal_image(probe, objective["class_index"], settings, layer=objective["layer"],
                             channel=objective["channel"], on_step=on_step, on_frame=on_frame,
                             stop_event=job.stop_event)
        return {"result": result, "label": objective["label"]}
    return target


def compare_target(probe: ModelProbe, index: int, settings: IdealSettings, others: dict):
    def target(job: Job):
        return compare_tv(probe, index, settings, others=others,
                          on_progress=lambda d, t, m: job.set_progress(d, t, m),
                          stop_event=job.stop_event)
    return target


def transfer_probes(name: str | None) -> dict[str, ModelProbe]:
    """The other EfficientNet-Lite models, for the transfer figures (only for a Lite backbone)."""
    if name not in LITE_FAMILY:
        return {}
    out = {}
    for other in LITE_FAMILY:
        if other == name:
            continue
        backbone = ui_state.get_backbone(other)
        if backbone.pretrained:
            out[other] = ui_state.get_backbone_probe(other)
    return out


@st.fragment(run_every=IDEAL_REFRESH_S)
def ideal_live_fragment() -> None:
    """The image evolving and its probability curve, redrawn while the job runs."""
    job, snap = job_state(IDEAL_JOB)
    if job is None:
        return
    if snap["status"] != "running":
        st.rerun()
    running_job_ui(job, snap, IDEAL_JOB, "Ideal image")
    frames, steps = snap["events"].get("frame", []), snap["events"].get("step", [])
    left, right = st.columns([1, 2])
    if frames:
        left.image(frames[-1]["image"], caption=f"step {frames[-1]['step']}", width="stretch")
    if steps:
        right.plotly_chart(make_ideal_curve_figure([s["prob"] for s in steps],
                                                   [s["objective"] for s in steps]),
                           key="inside_ideal_live_curve")


def remember(result, label: str) -> None:
    """Adds a finished ideal image to this session's gallery (newest first), once."""
    gallery = list(ui_state.get(GALLERY) or [])
    if any(item["result"] is result for item in gallery):
        return
    gallery.insert(0, {"result": result, "label": label})
    ui_state.put(GALLERY, gallery[:MAX_GALLERY])


def ideal_result_ui(result, label: str) -> None:
    left, right = st.columns([1, 2])
    if result.class_index is not None:
        caption = f"{label}: p = {result.prob:.2f}"
        probs = result.probs
    else:
        caption = f"{label}: top class p = {result.prob:.2f}"
        probs = [0.0] * len(result.objective)  # a channel has no class probability per step
    left.image(result.image.astype(np.uint8), width="stretch",
               caption=f"{caption} after {result.steps} steps ({result.seconds:.1f} s)")
    right.plotly_chart(make_ideal_curve_figure(probs, result.objective), key="inside_ideal_curve")
    left.download_button("Download PNG", png_bytes(result.image),
                         file_name=f"ideal_{label.replace(' ', '_')}.png", mime="image/png",
                         key="inside_ideal_download", icon=":material/download:")


def compare_result_ui(out: dict, probe: ModelProbe) -> None:
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
    gallery = ui_state.get(GALLERY) or []
    if not gallery:
        return
    st.subheader("This session's ideal images")
    cols = st.columns(4)
    for i, item in enumerate(gallery):
        r = item["result"]
        cols[i % 4].image(r.image.astype(np.uint8), width="stretch",
                          caption=f"{item['label']} · p {r.prob:.2f} · TV {r.settings.tv_weight:g}")


def ideal_tab(probe: ModelProbe, backbone_name: str | None) -> None:
    st.write("Start from noise and change the image until the network sees the class. Without a "
             "penalty the result is coloured noise that convinces only this network; total "
             "variation and random jitter make patterns that other networks recognise too.")
    try:
        objective = objective_ui(probe)
    except TransferLabError as e:
        st.error(str(e))
        return
    settings = ideal_settings_ui(probe)
    job, snap = job_state(IDEAL_JOB)
    cmp_job, cmp_snap = job_state(COMPARE_JOB)
    c1, c2 = st.columns(2)
    if c1.button("Generate", type="primary", icon=":material/auto_awesome:", key="inside_ideal_run",
                 disabled=job is not None and job.running):
        start(IDEAL_JOB, "ideal image", ideal_target(probe, objective, settings))
    if c2.button(f"Compare TV 0 with TV {settings.tv_weight:g} (and plain ascent)",
                 icon=":material/compare:", key="inside_compare_run",
                 disabled=objective["class_index"] is None or (
                     cmp_job is not None and cmp_job.running)):
        try:
            others = transfer_probes(backbone_name)
        except TransferLabError as e:
            st.error(str(e))
        else:
            start(COMPARE_JOB, "TV comparison",
                  compare_target(probe, objective["class_index"], settings, others))
    if job is not None and job.running:
        ideal_live_fragment()
    elif snap is not None:
        finished_note(snap)
        if snap["result"] is not None:
            remember(snap["result"]["result"], snap["result"]["label"])
            ideal_result_ui(snap["result"]["result"], snap["result"]["label"])
    if cmp_job is not None and cmp_job.running:
        progress_fragment(COMPARE_JOB, "TV comparison")
    elif cmp_snap is not None:
        finished_note(cmp_snap)
        if cmp_snap["result"]:
            st.subheader("TV weight 0 vs yours, and plain gradient ascent")
            compare_result_ui(cmp_snap["result"], probe)
    gallery_ui()


# ----- Grad-CAM tab ----------------------------------------------------------------------------------


def cam_target(probe: ModelProbe, image: np.ndarray, index: int | None, layer: str | None):
    def target(job: Job):
        job.set_progress(0, 1, "computing gradients")
        return gradcam(probe, image, index, layer=layer)
    return target


def gradcam_tab(probe: ModelProbe) -> None:
    st.write("Which parts of the image the evidence for a class comes from (Grad-CAM on the last "
             "feature map, or a layer you choose).")
    image, caption = image_picker_ui("inside_cam", probe.input_size)
    option = st.selectbox("Class to explain (type to search)", [PREDICTED] + class_options(probe),
                          key="inside_cam_class")
    try:
        layers = layer_names_with_maps(probe.model)
    except TransferLabError as e:
        st.error(str(e))
        return
    layer = st.selectbox("Feature-map layer", layers[::-1], key="inside_cam_layer")
    job, snap = job_state(CAM_JOB)
    if st.button("Explain", type="primary", icon=":material/visibility:", key="inside_cam_run",
                 disabled=image is None or (job is not None and job.running)):
        index = None if option == PREDICTED else class_index(option)
        start(CAM_JOB, "grad-cam", cam_target(probe, image, index, layer))
    if job is not None and job.running:
        progress_fragment(CAM_JOB, "Grad-CAM")
    elif snap is not None:
        finished_note(snap)
        result = snap["result"]
        if result is not None:
            big = np.kron(result.heatmap, np.ones((16, 16), np.float32))
            c1, c2, c3 = st.columns(3)
            c1.image(result.overlay, caption=f"Grad-CAM for {result.label} (p = {result.prob:.2f})",
                     width="stretch")
            c2.image((colorize(big) * 255).astype(np.uint8), width="stretch",
                     caption=f"Heatmap at {result.layer}: {result.heatmap.shape[0]}×"
                             f"{result.heatmap.shape[1]} cells")
            c3.plotly_chart(make_topk_figure(result.top, title="Top 5"), key="inside_cam_top")


# ----- page --------------------------------------------------------------------------------------------

st.title("Look inside")
choice = model_choice_ui()
try:
    session_probe, description, session_backbone = load_probe(choice)
except TransferLabError as e:
    st.error(str(e))
    ui_state.page_link("pages/zoo.py", label="Choose another backbone", icon=":material/table_chart:")
    st.stop()
st.caption(f"Looking inside {description}, {session_probe.input_size} px input. "
           "All budgets are in pixel units (0-255).")
tab_attack, tab_ideal, tab_cam = st.tabs(["Adversarial", "Ideal image", "Grad-CAM"])
with tab_attack:
    adversarial_tab(session_probe)
with tab_ideal:
    ideal_tab(session_probe, session_backbone)
with tab_cam:
    gradcam_tab(session_probe)
