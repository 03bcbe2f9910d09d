"""Lessons on the tiny random backbone: the registry, `lessons list/run`, and the page (AppTest).

The real-weight claims of each lesson are in test_lessons_large.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lib.cli import main
from lib.errors import TransferLabError
from lib.lessons import coerce_params, get_lesson, list_lessons, run_lesson
from lib.ui import navigation

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
IMPLEMENTED = ["features", "transfer-vs-scratch", "frozen-vs-finetune", "batchnorm-pitfall",
               "ideal-image", "adversarial", "when-transfer-fails"]
TINY = "tiny_random"
# The training lessons on the tiny backbone, few images and epochs: the logic, not the claims.
TINY_TRAINING = {"backbone": TINY, "per_class": 12, "head_epochs": 2, "fine_tune_epochs": 2}
# Tiny settings for the training lessons (their defaults train Lite0 for minutes).
TINY_TRANSFER = {
    "transfer-vs-scratch": {"backbone": TINY, "size": 32, "epochs": 2, "images_per_class": "2,5",
                            "curve_images": 5},
    "when-transfer-fails": {"backbone": TINY, "size": 32, "epochs": 2, "images_per_class": 5},
}
# Every lesson on the tiny backbone at its smallest sizes: what `prepared` prepares, and what the
# page runs (TRANSFERLAB_LESSON_PARAMS), so a kept result replays and a click trains in seconds.
TINY_OVERRIDES = {
    "features": {"backbone": TINY},
    "adversarial": {"backbone": TINY, "target": None},
    "ideal-image": {"backbone": TINY, "other": None, "class_index": 1, "steps": 3},
    "frozen-vs-finetune": TINY_TRAINING, "batchnorm-pitfall": TINY_TRAINING, **TINY_TRANSFER,
}


def tiny_params(name: str, **changes) -> dict:
    """A lesson's complete parameters at its tiny sizes (the key its kept result is under)."""
    return coerce_params(get_lesson(name), {**TINY_OVERRIDES[name], **changes})


@pytest.fixture(scope="module")
def prepared():
    """`lessons prepare` once on the tiny backbone, for the module: its summary and progress.

    It keeps the training lessons' results under `tiny_params`, which the page asks for
    (`open_lesson`), so the page tests replay them; the live runs are clicked in
    `test_every_listed_lesson_runs_its_main_step_in_both_modes`. Removed afterwards.
    """
    from lib.lessons import default_models
    from lib.lessons.prepare import prepare_lessons
    from lib.lessons.replay import replay_dir

    seen = []
    summary = prepare_lessons(default_models(), overrides=TINY_OVERRIDES,
                              on_progress=lambda done, total, message: seen.append((done, total)))
    yield summary, seen
    import shutil

    for lesson in list_lessons():
        shutil.rmtree(replay_dir(lesson.name, tiny_params(lesson.name)), ignore_errors=True)


def kept(name: str) -> dict:
    """The result `prepared` kept for a training lesson (`lesson.run` at `tiny_params`)."""
    from lib.lessons.replay import load_replay

    result = load_replay(name, tiny_params(name))
    assert result is not None, name
    return result


def test_registry_lists_the_implemented_lessons_in_order():
    assert [lesson.name for lesson in list_lessons()] == IMPLEMENTED
    for lesson in list_lessons():
        assert 2 <= len(lesson.paragraphs) <= 3
        assert lesson.notice and lesson.question and lesson.answer and lesson.timing


def test_unknown_lesson_and_bad_params_are_user_errors():
    with pytest.raises(TransferLabError, match="lesson=nope"):
        get_lesson("nope")
    with pytest.raises(TransferLabError, match="colour=red"):
        coerce_params(get_lesson("features"), {"colour": "red"})
    with pytest.raises(TransferLabError, match="eps=big"):
        coerce_params(get_lesson("adversarial"), {"eps": "big"})
    params = coerce_params(get_lesson("adversarial"), {"eps": "4", "target": "none"})
    assert params["eps"] == 4.0 and params["target"] is None


def test_lesson_backbones_are_lite0_and_lite2_unless_a_test_backbone_is_the_default(monkeypatch):
    from lib.lessons import lesson_backbones

    for name in ("TRANSFERLAB_LESSON_BACKBONE", "TRANSFERLAB_LESSON_OTHER_BACKBONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "mobilenet_v2")
    assert lesson_backbones() == ("efficientnet_lite0", "efficientnet_lite2")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", TINY)
    assert lesson_backbones() == (TINY, TINY)
    monkeypatch.setenv("TRANSFERLAB_LESSON_BACKBONE", "efficientnet_lite1")
    assert lesson_backbones() == ("efficientnet_lite1", TINY)


def test_page_params_are_the_defaults_on_the_page_backbone_updated_from_the_environment(
        monkeypatch):
    from lib.lessons import page_params

    lesson = get_lesson("frozen-vs-finetune")
    monkeypatch.delenv("TRANSFERLAB_LESSON_PARAMS", raising=False)
    assert page_params(lesson, TINY) == coerce_params(lesson, {"backbone": TINY})
    monkeypatch.setenv("TRANSFERLAB_LESSON_PARAMS", json.dumps(
        {"frozen-vs-finetune": {"fine_tune_epochs": "2"}, "features": {"channels": 4}}))
    params = page_params(lesson, TINY)
    assert params["fine_tune_epochs"] == 2 and params["backbone"] == TINY
    assert params["per_class"] == lesson.defaults["per_class"]  # the rest stays the default
    for raw, match in (("{not json", "not JSON"), ('["frozen-vs-finetune"]', "map each lesson"),
                       ('{"frozen-vs-finetune": {"colour": 1}}', "colour=1")):
        monkeypatch.setenv("TRANSFERLAB_LESSON_PARAMS", raw)
        with pytest.raises(TransferLabError, match=match):
            page_params(lesson, TINY)


def test_features_on_tiny_has_three_cuts_that_shrink():
    result = run_lesson("features", {"backbone": TINY, "channels": 4})
    cuts = result["numbers"]["cuts"]
    assert [c["role"] for c in cuts] == ["early", "middle", "late"]
    heights = [c["height"] for c in cuts]
    assert heights == sorted(heights, reverse=True) and heights[0] > heights[-1]
    assert len(result["numbers"]["top5"]) == 5
    for role in ("early", "middle", "late"):
        mosaic = result["images"][f"maps_{role}"]
        assert mosaic.dtype == np.uint8 and mosaic.ndim == 3 and mosaic.shape[-1] == 3


def test_adversarial_on_tiny_stays_within_eps():
    numbers = run_lesson("adversarial", {"backbone": TINY, "eps": 4, "target": None})["numbers"]
    assert numbers["linf"] <= 4.0
    assert numbers["target"] is None


def test_ideal_on_tiny_reports_both_kinds():
    result = run_lesson("ideal-image", {"backbone": TINY, "other": TINY, "class_index": 1,
                                        "steps": 5})
    for kind in ("plain", "regularised"):
        numbers = result["numbers"][kind]
        assert 0 <= numbers["prob"] <= 1 and 0 <= numbers["other_backbone_prob"] <= 1
        assert numbers["total_variation"] >= 0
        assert result["images"][kind].dtype == np.uint8


def test_cli_list_and_run(tmp_path, capsys):
    assert main(["lessons", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [lesson["name"] for lesson in listed] == IMPLEMENTED
    out = tmp_path / "features"
    assert main(["lessons", "run", "features", "--out", str(out), "--param", f"backbone={TINY}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lesson"] == "features" and len(printed["cuts"]) == 3
    for name in ("photo.png", "maps_early.png", "maps_late.png", "top5.html", "numbers.json"):
        assert (out / name).is_file(), name
    assert main(["lessons", "run", "nope"]) == 2
    assert main(["lessons", "run", "features", "--param", "channels"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_prepare_runs_every_lesson_cold_then_its_click_warm(prepared):
    summary, seen = prepared
    assert list(summary) == IMPLEMENTED
    assert seen[-1] == (2 * len(IMPLEMENTED), 2 * len(IMPLEMENTED))
    assert all(row["cold_s"] >= 0 and row["warm_s"] >= 0 for row in summary.values())
    assert summary["ideal-image"]["click"] == {"which": "regularised"}
    for lesson in list_lessons():  # the training lessons keep their result; the others need not
        assert summary[lesson.name]["replay"] == lesson.replay
        if lesson.replay:
            assert kept(lesson.name)["replayed"]


def test_frozen_vs_finetune_on_tiny_reports_both_branches_and_the_param_counts(prepared):
    result = kept("frozen-vs-finetune")  # `run` with TINY_TRAINING, by `lessons prepare`
    numbers = result["numbers"]
    for key in ("frozen", "finetune_low_rate", "finetune_same_rate"):
        assert 0 <= numbers[key] <= 1, key
    assert numbers["rates"]["same"] == pytest.approx(10 * numbers["rates"]["low"])
    params = numbers["params"]
    assert params["blocks"] == [0, 1, 2, 3] and params["unfrozen_blocks"] == 3  # all it has
    totals = {t + n for t, n in zip(params["trainable"], params["non_trainable"], strict=True)}
    assert len(totals) == 1  # unfreezing moves parameters between the two, never adds any
    assert params["trainable"] == sorted(params["trainable"])
    names = [trace.name for trace in result["figures"]["curves"].data]
    assert len(names) == 3 and "head only" in names[0]
    assert set(result["figures"]) == {"curves", "loss", "params"}


def test_param_counts_without_training_match_an_unfrozen_copy(tiny_backbone):
    from lib.backbones import get_spec
    from lib.lessons.finetune import unfreeze_param_counts
    from lib.models import build_body, build_classifier, build_head, count_params
    from lib.training import TrainConfig, unfrozen_copy

    body = build_body(tiny_backbone)
    head = build_head(tuple(body.outputs[0].shape[1:]), 2, seed=0)
    classifier = build_classifier(body, head, 32)
    counts = unfreeze_param_counts(body, get_spec(TINY).cut_points, count_params(head)["trainable"])
    assert [counts["trainable"][0], counts["non_trainable"][0]] == list(
        count_params(classifier).values())
    for n in counts["blocks"][1:]:
        model, _ = unfrozen_copy(classifier, TrainConfig(backbone=TINY, unfreeze_blocks=n))
        assert count_params(model) == {"trainable": counts["trainable"][n],
                                       "non_trainable": counts["non_trainable"][n]}, n


def test_batchnorm_pitfall_on_tiny_reports_both_modes(prepared):
    result = kept("batchnorm-pitfall")  # `run` with TINY_TRAINING, by `lessons prepare`
    numbers = result["numbers"]
    assert 0 <= numbers["bn_inference"] <= 1 and 0 <= numbers["bn_training"] <= 1
    assert set(numbers["curves"]) == {"inference", "training"} and numbers["batch_size"] == 1
    assert [trace.name for trace in result["figures"]["curves"].data][1:] == [
        "BatchNorm in inference mode (training=False)", "BatchNorm in training mode, batches of 1"]


def test_cli_runs_a_training_lesson_and_prints_its_numbers(tmp_path, capsys):
    out = tmp_path / "bn"
    args = [f"--param={key}={value}" for key, value in
            dict(TINY_TRAINING, head_epochs=1, fine_tune_epochs=1).items()]
    assert main(["lessons", "run", "batchnorm-pitfall", "--out", str(out), *args]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"bn_inference", "bn_training"} <= set(printed)
    assert (out / "curves.html").is_file() and (out / "numbers.json").is_file()


def test_a_lesson_with_a_bad_subset_size_is_a_user_error():
    with pytest.raises(TransferLabError, match="per_class=-1"):
        run_lesson("frozen-vs-finetune", dict(TINY_TRAINING, per_class=-1))

# ----- the page -----------------------------------------------------------------------------------


@pytest.fixture
def open_lesson(monkeypatch, prepared):
    """Returns `open_lesson(kept=True, **query) -> AppTest` on the Lessons page with tiny backbones
    and the lessons' tiny sizes. `kept=True`: the training lessons replay what `prepared` kept;
    False: as on a server where `lessons prepare` never ran (another seed, nothing kept)."""
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", TINY)
    monkeypatch.setenv("TRANSFERLAB_LESSON_BACKBONE", TINY)
    monkeypatch.setenv("TRANSFERLAB_LESSON_OTHER_BACKBONE", TINY)

    def open_(kept: bool = True, **query) -> AppTest:
        monkeypatch.setenv("TRANSFERLAB_LESSON_PARAMS", json.dumps(
            {name: params if kept or not get_lesson(name).replay else {**params, "seed": 1}
             for name, params in TINY_OVERRIDES.items()}))
        at = AppTest.from_file(APP, default_timeout=120)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        at.switch_page(navigation.LESSONS.path).run()
        assert_clean(at)
        return at
    return open_


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_lessons_is_a_section_of_the_navigation():
    assert navigation.SECTIONS["Lessons"] == (navigation.LESSONS,)


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_every_lesson_renders_with_its_question(open_lesson, name):
    at = open_lesson(lesson=name)
    lesson = get_lesson(name)
    assert at.title[0].value == lesson.title
    assert any(lesson.question in m.value for m in at.markdown)
    assert not any(lesson.answer in s.value for s in at.success)
    at.button(key=f"lessons_reveal_{name}").click().run()
    assert_clean(at)
    assert any(lesson.answer in s.value for s in at.success)


def test_features_lesson_draws_three_cut_points(open_lesson):
    at = open_lesson(lesson="features")
    assert len(at.get("image")) == 4  # the photo and three mosaics
    at.button_group(key="lessons_features_photo").set_value("coffee").run()
    assert_clean(at)
    assert at.query_params["photo"] in ("coffee", ["coffee"])  # the choice is kept in the URL
    assert any("A cup of coffee" in str(i.proto.imgs[0].caption) for i in at.get("image"))


def test_adversarial_lesson_reads_eps_from_the_url(open_lesson):
    at = open_lesson(lesson="adversarial", eps="4.0")
    assert at.select_slider(key="lessons_adversarial_eps").value == 4.0
    assert any("ε = 4" in m.value for m in at.markdown)


def test_ideal_lesson_runs_plain_ascent_on_a_click(open_lesson):
    at = open_lesson(lesson="ideal-image")
    assert not any("Total variation" in m.value for m in at.markdown)
    at.button(key="lessons_ideal_run_plain").click().run()
    assert_clean(at)
    assert any("Total variation" in m.value for m in at.markdown)


# ----- the training lessons' page: a kept result replays, "Run it live" computes it ------------


def test_frozen_vs_finetune_page_counts_params_live_and_toggles_the_same_rate(open_lesson):
    at = open_lesson(lesson="frozen-vs-finetune", blocks="3")
    assert any("Prepared before class" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert not any("head's rate" in m.label for m in at.metric)
    trainable_3 = metrics["Trainable parameters"]
    at.select_slider(key="lessons_finetune_blocks").set_value(0).run()
    assert_clean(at)
    assert at.query_params["blocks"] in ("0", ["0"])
    trainable_0 = {m.label: m.value for m in at.metric}["Trainable parameters"]
    assert int(trainable_0.replace(",", "")) < int(trainable_3.replace(",", ""))
    at.toggle(key="lessons_finetune_same").set_value(True).run()
    assert_clean(at)
    assert len([m for m in at.metric if m.label.startswith("Fine-tuned at")]) == 2


def test_batchnorm_page_replays_then_runs_live(open_lesson):
    at = open_lesson(lesson="batchnorm-pitfall")
    assert {"BatchNorm in inference mode", "BatchNorm in training mode"} <= {m.label for m in at.metric}
    assert any("Prepared before class" in c.value for c in at.caption)
    at.button(key="lessons_batchnorm-pitfall_live").click().run()
    assert_clean(at)
    at.run()  # the live result replaced the kept one for this session
    assert not any("Prepared before class" in c.value for c in at.caption)
    assert any("Why:" in m.value for m in at.markdown)


def test_an_unknown_lesson_in_the_url_says_so_and_falls_back(open_lesson, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_LESSON_BACKBONE", TINY)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["lesson"] = "nope"
    at.run()
    at.switch_page(navigation.LESSONS.path).run()
    assert not at.exception
    assert any("lesson=nope" in e.value for e in at.error)
    assert at.title[0].value == get_lesson("features").title


@pytest.mark.parametrize("name", IMPLEMENTED)
@pytest.mark.parametrize("step", ["1", "2"])  # the live steps; 0 and 3 are text (below)
def test_presenter_mode_renders_every_step_of_every_lesson(open_lesson, name, step):
    at = open_lesson(lesson=name, present="1", step=step)
    assert at.title[0].value == get_lesson(name).title
    assert any(f"Step {int(step) + 1} of 4" in m.value for m in at.markdown)
    assert not at.selectbox  # presenter mode shows no lesson picker


def test_presenter_mode_steps_through_the_lesson(open_lesson):
    at = open_lesson(lesson="adversarial", present="1", step="0")
    assert at.toggle(key="lessons_present").value is True
    assert any("Step 1 of 4" in m.value for m in at.markdown)
    assert any(get_lesson("adversarial").paragraphs[0] in m.value for m in at.markdown)
    for expected in ("Step 2 of 4", "Step 3 of 4", "Step 4 of 4"):
        at.button(key="lessons_next").click().run()
        assert_clean(at)
        assert any(expected in m.value for m in at.markdown), expected
    assert at.query_params["step"] in ("3", ["3"])  # the URL keeps the step
    at.button(key="lessons_back").click().run()
    assert_clean(at)
    assert any("What to notice" in i.value for i in at.info)
    assert len(at.get("image")) == 3  # the result again, beside the points


def test_a_kept_result_replays_numbers_images_and_figures(tmp_path):
    import numpy as np
    import plotly.graph_objects as go

    from lib.lessons.replay import load_replay, replay_dir, save_replay

    params = {"backbone": TINY, "per_class": 10}
    assert load_replay("transfer-vs-scratch", params, root=tmp_path) is None
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": {"text": "curves"}})
    save_replay("transfer-vs-scratch", params,
                {"numbers": {"transfer": [0.9]}, "images": {"photo": image},
                 "figures": {"curves": figure}}, root=tmp_path)
    kept = load_replay("transfer-vs-scratch", params, root=tmp_path)
    assert kept["replayed"] and kept["numbers"] == {"transfer": [0.9]}
    np.testing.assert_array_equal(kept["images"]["photo"], image)
    assert list(kept["figures"]["curves"].data[0].y) == [3, 4]
    assert load_replay("transfer-vs-scratch", dict(params, per_class=5), root=tmp_path) is None
    # A second save replaces the first; a damaged entry is absent, not an error.
    save_replay("transfer-vs-scratch", params, {"numbers": {"transfer": [0.5]}}, root=tmp_path)
    assert load_replay("transfer-vs-scratch", params, root=tmp_path)["numbers"] == {"transfer": [0.5]}
    (replay_dir("transfer-vs-scratch", params, tmp_path) / "figures.json").write_text("{not json")
    assert load_replay("transfer-vs-scratch", params, root=tmp_path) is None


# ----- every lesson the registry lists, both modes, its main step run ------------------------------


def click_run_buttons(at: AppTest) -> list[str]:
    """Clicks every button whose label starts with "Run" (`RUN_PREFIX`: each lesson's live step)
    once, each after the last one's run, as the browser pass does. Returns the labels clicked."""
    from lib.ui.lessons.common import RUN_PREFIX

    clicked: list[str] = []
    while True:
        todo = [b for b in at.button if b.label.startswith(RUN_PREFIX) and b.label not in clicked
                and not b.disabled]
        if not todo:
            return clicked
        clicked.append(todo[0].label)
        todo[0].click().run()
        assert_clean(at)


@pytest.mark.parametrize("name", [lesson.name for lesson in list_lessons()])
def test_every_listed_lesson_runs_its_main_step_in_both_modes(open_lesson, name):
    """Taken from `list_lessons()`, so a lesson added to the registry is covered here (and in the
    browser pass, tests/test_browser.py) without a new test. As a teacher would: the live step
    run before class has been prepared (a training lesson trains on "Run: train the networks"),
    then presenter mode switched on and stepped to "Try it", which shows that result again."""
    lesson = get_lesson(name)
    at = open_lesson(kept=False, lesson=name)
    assert at.title[0].value == lesson.title
    clicked = click_run_buttons(at)
    assert at.title[0].value == lesson.title
    assert clicked or not lesson.replay, "a training lesson trains only on a click"
    assert not any(i.value.startswith("Not ") for i in at.info)  # "Not trained yet", "Not run yet"
    assert at.get("plotly_chart") or not lesson.replay  # the trained networks' curves

    at.toggle(key="lessons_present").set_value(True).run()
    assert_clean(at)
    assert at.query_params["present"] in ("1", ["1"])
    assert any("Step 1 of 4" in m.value for m in at.markdown)
    at.button(key="lessons_next").click().run()  # to "Try it", the live step
    assert_clean(at)
    assert any("Step 2 of 4" in m.value for m in at.markdown)
    click_run_buttons(at)  # none left: the session computed them
    assert at.query_params["step"] in ("1", ["1"])
    assert not any(i.value.startswith("Not ") for i in at.info)
    assert at.get("plotly_chart") or not lesson.replay


# ----- the lessons that train on a few digits (tiny backbone, small sizes) ------------------------

def test_transfer_vs_scratch_on_tiny_returns_numbers_curves_and_figures():
    from lib.lessons import default_models

    seen = []
    lesson = get_lesson("transfer-vs-scratch")
    params = coerce_params(lesson, {**TINY_TRANSFER[lesson.name], "images_per_class": "5,2,5"})
    result = lesson.run(default_models(), **params,
                        on_progress=lambda done, total, message: seen.append((done, total, message)))
    numbers = result["numbers"]
    assert numbers["images_per_class"] == [2, 5]  # sorted, unique
    assert len(numbers["transfer"]) == len(numbers["scratch"]) == 2
    assert all(0 <= a <= 1 for a in numbers["transfer"] + numbers["scratch"])
    assert numbers["curves"]["images_per_class"] == 5
    assert len(numbers["curves"]["transfer"]) == len(numbers["curves"]["scratch"]) == 2
    assert numbers["curves"]["transfer"][-1] == numbers["transfer"][1]  # the curve ends at the number
    assert numbers["test_images"] == 300 and numbers["chance"] == 0.1
    assert seen[-1][:2] == (8, 8) and "scratch" in seen[-1][2]  # 2 counts x 2 kinds x 2 epochs
    assert set(result["figures"]) == {"curves", "accuracy_vs_images"}
    assert len(result["figures"]["curves"].data) == 2


def test_transfer_vs_scratch_bad_counts_are_user_errors():
    with pytest.raises(TransferLabError, match="images_per_class=two"):
        run_lesson("transfer-vs-scratch", {**TINY_TRANSFER["transfer-vs-scratch"],
                                           "images_per_class": "two"})
    with pytest.raises(TransferLabError, match="images_per_class=80"):  # 80 + 30 test > 100
        run_lesson("transfer-vs-scratch", {**TINY_TRANSFER["transfer-vs-scratch"],
                                           "images_per_class": "80"})


def test_when_transfer_fails_on_tiny_compares_cuts_and_fine_tuning(prepared):
    numbers = kept("when-transfer-fails")["numbers"]  # `run` at TINY_TRANSFER, by `lessons prepare`
    assert numbers["cuts"] == ["block2_out", "block3_out", "top_activation"]  # bottom to top
    assert len(numbers["frozen"]) == 3 and 0 <= numbers["fine_tuned"] <= 1
    assert len(numbers["fine_tune_curve"]) == 2 and numbers["best_frozen_cut"] in numbers["cuts"]
    with pytest.raises(TransferLabError, match="cuts=nowhere"):
        run_lesson("when-transfer-fails", {**TINY_TRANSFER["when-transfer-fails"],
                                           "cuts": "nowhere"})


def test_sized_body_keeps_the_architecture_and_copies_or_redraws_the_weights(tiny_backbone):
    from lib.backbones import feature_model
    from lib.lessons.small_data import build_sized_body

    source = feature_model(tiny_backbone)
    pretrained = build_sized_body(tiny_backbone, 48)
    random = build_sized_body(tiny_backbone, 48, pretrained=False, seed=1)
    assert pretrained.inputs[0].shape[1:3] == (48, 48) and source.inputs[0].shape[1] == 32
    assert [w.shape for w in pretrained.get_weights()] == [w.shape for w in source.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(pretrained.get_weights(), source.get_weights(),
                                                    strict=True))
    assert not pretrained.trainable_weights and random.trainable_weights
    assert any(not np.array_equal(a, b) for a, b in zip(random.get_weights(),
                                                        source.get_weights(), strict=True))
    assert all(layer.trainable for layer in source.layers[1:]) is False  # the shared one untouched


def test_split_per_class_is_nested_and_keeps_the_test_images():
    from lib.lessons.small_data import split_per_class

    labels = np.repeat(np.arange(3), 40)
    train5, test5 = split_per_class(labels, 5, seed=0, test_per_class=10)
    train2, test2 = split_per_class(labels, 2, seed=0, test_per_class=10)
    assert np.array_equal(test5, test2) and set(train2) <= set(train5)
    assert not set(train5) & set(test5)
    assert np.bincount(labels[train5]).tolist() == [5, 5, 5]


def test_cli_runs_transfer_vs_scratch_and_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "tvs"
    params = [arg for key, value in dict(TINY_TRANSFER["transfer-vs-scratch"], epochs=1).items()
              for arg in ("--param", f"{key}={value}")]
    assert main(["lessons", "run", "transfer-vs-scratch", "--out", str(out), *params]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images_per_class"] == [2, 5] and len(printed["scratch"]) == 2
    for name in ("curves.html", "accuracy_vs_images.html", "numbers.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("name", [lesson.name for lesson in list_lessons() if lesson.replay])
def test_training_lessons_offer_a_button_when_nothing_was_prepared(open_lesson, name):
    at = open_lesson(kept=False, lesson=name)  # nothing trains on page load
    assert at.button(key=f"lessons_{name}_train")
    assert any("Not trained yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_training_lessons_replay_what_prepare_kept(open_lesson):
    at = open_lesson(lesson="transfer-vs-scratch")
    assert len(at.get("plotly_chart")) == 2
    assert any("images per class" in m.value and "from random weights" in m.value
               for m in at.markdown)
    assert any("lessons prepare" in c.value for c in at.caption)
    assert at.button(key="lessons_transfer-vs-scratch_live")  # "Run it live"
    at = open_lesson(lesson="when-transfer-fails", present="1", step="2")
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1
    assert any("fine-tuned from the top cut" in m.value for m in at.markdown)
