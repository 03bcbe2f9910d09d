"""The measured zoo: two tiny backbones measured fast, the per-machine cache, the JSON columns."""

from __future__ import annotations

import json
from types import MappingProxyType

import keras
import pytest

from lib import zoo
from lib.backbones import RANDOM, BackboneSpec, list_specs, registry
from lib.storage import runs_dir

FAST = {"min_runs": 3, "budget_s": 0.05, "isolate": False}  # tiny_zoo_test lives in this process


def _build_tiny_wide(pretrained: bool = False) -> keras.Model:
    inputs = keras.Input((24, 24, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="block1_conv")(x)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.ReLU(name="top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(x))


@pytest.fixture(scope="module", autouse=True)
def second_tiny():
    """A second test backbone, seen by this module only (the registry itself is read-only)."""
    spec = BackboneSpec(name="tiny_zoo_test", family="test", builder=_build_tiny_wide, input_size=24,
                        preprocessing="x / 255", feature_dim=8, cut_points=("top_activation",),
                        weights_source="random", weights_status=lambda: RANDOM, top1=50.0, top5=90.0,
                        accuracy_source="made up for the test", num_classes=5, listed=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_REGISTRY", MappingProxyType({**registry._REGISTRY, spec.name: spec}))
        yield


def _fake_fingerprint(cpu: str) -> dict:
    fp = {"cpu": cpu, "cores": 2, "gpu": None, "tensorflow": "x", "keras": "y", "device": f"CPU: {cpu}"}
    fp["key"] = zoo.fingerprint_key(fp)
    return fp


def test_two_tiny_backbones_measure_and_cache_by_fingerprint():
    fp = _fake_fingerprint("test CPU A")
    progress = []
    data = zoo.measure_zoo(["tiny_random", "tiny_zoo_test"], (1, 4), fingerprint=fp,
                           on_progress=lambda d, t, m: progress.append((d, t)), **FAST)
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)
    row = data["rows"]["tiny_zoo_test"]
    assert row["params"] == 3 * 3 * 3 * 8 + 8 + 4 * 8 + 8 * 5 + 5
    assert row["depth"] == 3  # conv, BN, dense: the layers with weights
    assert row["size_mb"] > 0 and row["peak_mem_mb"] is not None
    assert row["measured_pretrained"] is False
    t1, t4 = row["timings"]["1"], row["timings"]["4"]
    assert t1["runs"] >= 3 and t1["p10_ms_per_image"] <= t1["median_ms_per_image"] <= t1["p90_ms_per_image"]
    assert t4["throughput_ips"] > 0

    assert zoo.zoo_cache_path(fp).is_file()
    again = zoo.zoo_table(["tiny_zoo_test"], fingerprint=fp)["rows"][0]
    assert again["latency_ms_b1"] == t1["median_ms_per_image"]
    other = zoo.zoo_table(["tiny_zoo_test"], fingerprint=_fake_fingerprint("test CPU B"))["rows"][0]
    assert other["latency_ms_b1"] is None  # another machine: nothing measured there yet

    # Re-measuring one row keeps the other.
    before = zoo.load_zoo_cache(fp)["rows"]["tiny_random"]["measured_at"]
    zoo.measure_zoo(["tiny_zoo_test"], (1,), fingerprint=fp, **FAST)
    rows = zoo.load_zoo_cache(fp)["rows"]
    assert rows["tiny_random"]["measured_at"] == before and "1" in rows["tiny_zoo_test"]["timings"]


def test_json_has_the_documented_columns():
    fp = _fake_fingerprint("test CPU C")
    zoo.measure_zoo(["tiny_random"], (1, 32), fingerprint=fp, **FAST)
    table = zoo.zoo_table(["tiny_random"], fingerprint=fp)
    json.dumps(table)
    for key in ("fingerprint", "device", "depth_method", "latency_method", "memory_method", "accuracy_note", "rows"):
        assert key in table
    row = table["rows"][0]
    assert set(zoo.ZOO_COLUMNS) <= set(row)
    assert row["latency_ms_b32"] is not None and row["throughput_b32"] is not None


def test_cli_without_measure_prints_registry_and_cache(capsys):
    from lib.cli import main

    assert main(["zoo", "--json", "--backbones", "efficientnet_lite0,resnet50"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in table["rows"]] == ["efficientnet_lite0", "resnet50"]
    assert table["rows"][1]["top1"] == 74.9 and table["rows"][1]["top5"] == 92.1
    assert main(["zoo", "--backbones", "efficientnet_lite0"]) == 0
    assert "published ImageNet figures" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(capsys):
    from lib.cli import main

    assert main(["zoo", "--batch", "1,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "1,x" in err and err.count("\n") == 1


def test_published_accuracy_is_present_wherever_the_registry_has_it():
    rows = {r["name"]: r for r in zoo.zoo_table(fingerprint=_fake_fingerprint("any"))["rows"]}
    assert {n: rows[n]["top1"] for n in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")} == {
        "efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7, "efficientnet_lite2": 77.6}
    assert list(rows) == [spec.name for spec in list_specs()]  # every listed backbone, in registry order
    for row in rows.values():
        if row["top1"] is not None:
            assert row["accuracy_source"]
            assert 0 < row["top1"] <= (row["top5"] if row["top5"] is not None else 100) <= 100


def test_registry_facts_win_over_a_stale_cached_row():
    fp = _fake_fingerprint("test CPU stale")
    stale = {**zoo.registry_row(list_specs()[0]), "top1": 1.0, "top5": 2.0, "accuracy_source": "old",
             "input_size": 7, "timings": {"1": {"median_ms_per_image": 3.0, "p10_ms_per_image": 2.0,
                                                 "p90_ms_per_image": 4.0, "throughput_ips": 300.0}}}
    name = stale["name"]
    zoo.save_zoo_cache({"schema": zoo.SCHEMA_VERSION, "fingerprint": fp, "rows": {name: stale}})
    row = zoo.zoo_table([name], fingerprint=fp)["rows"][0]
    spec = list_specs()[0]
    assert (row["top1"], row["top5"], row["input_size"]) == (spec.top1, spec.top5, spec.input_size)
    assert row["accuracy_source"] != "old"
    assert row["latency_ms_b1"] == 3.0  # measurements come from the cache


def test_pareto_front_keeps_only_undominated():
    rows = [{"name": "a", "latency_ms_b1": 1, "top1": 70}, {"name": "b", "latency_ms_b1": 2, "top1": 69},
            {"name": "c", "latency_ms_b1": 3, "top1": 80}, {"name": "d", "latency_ms_b1": None, "top1": 90}]
    assert zoo.pareto_front(rows) == ["a", "c"]




def test_scatter_figure_draws_bubbles_and_the_front():
    from lib.plots.zoo import make_zoo_scatter_figure

    rows = [{"name": "a", "latency_ms_b1": 1.0, "top1": 70.0, "size_mb": 10.0, "weights": "offline",
             "params": 1, "top5": None},
            {"name": "b", "latency_ms_b1": 2.0, "top1": 60.0, "size_mb": 500.0, "weights": "download needed",
             "params": 2, "top5": None},
            {"name": "c", "latency_ms_b1": 3.0, "top1": 80.0, "size_mb": 40.0, "weights": "cached",
             "params": 3, "top5": 95.0}]
    fig = make_zoo_scatter_figure(rows, selected="c")
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert list(front.x) == [1.0, 3.0]
    sizes = {t.text[0]: t.marker.size[0] for t in fig.data if t.mode == "markers+text"}
    assert sizes["b"] > sizes["c"] > sizes["a"]  # bubble area follows size on disk
    with pytest.raises(ValueError, match="nope"):
        make_zoo_scatter_figure(rows, x="nope")


def test_isolated_measurement_runs_in_a_fresh_process():
    row = zoo.measure_in_subprocess("tiny_random", (1,), min_runs=3, budget_s=0.05)
    assert row["name"] == "tiny_random" and row["timings"]["1"]["runs"] >= 3 and row["depth"] == 7


def test_the_worker_measures_a_hub_backbone_at_its_fixed_non_default_size(tmp_path, monkeypatch):
    # tiny_random exports a SavedModel that takes 32 px only: building it at the 224 px default fails.
    from lib.backbones import hub_compat
    from lib.backbones.export import export_hub

    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(tmp_path))
    handle = tmp_path / "tiny_hub"
    export_hub("tiny_random", handle)
    name = hub_compat.hub_spec(str(handle)).name  # never registered: the worker resolves the handle
    row = zoo.measure_in_subprocess(name, (1,), min_runs=3, budget_s=0.05)
    assert row["name"] == name and row["input_size"] == 32 and row["family"] == "TF Hub"
    assert row["depth"] is None and row["measured_pretrained"] is True and row["size_mb"] > 0


def test_the_zoo_times_litert_beside_tensorflow():
    """What deployment would cost: each row also has LiteRT (XNNPACK) latency and throughput."""
    fp = _fake_fingerprint("test CPU LiteRT")
    data = zoo.measure_zoo(["tiny_random"], (1, 32), fingerprint=fp, **FAST)
    row = data["rows"]["tiny_random"]
    assert row["litert_error"] is None, row["litert_error"]
    for batch in ("1", "32"):
        timing = row["timings_litert"][batch]
        assert timing["engine"] == "litert" and timing["throughput_ips"] > 0
    flat = zoo.flatten_row(row)
    assert flat["latency_ms_b1_litert"] > 0 and flat["throughput_b32_litert"] > 0


def test_timings_say_where_they_ran():
    import tensorflow as tf

    from lib.zoo.measure import NO_GPU, timing_device

    fp = _fake_fingerprint("test CPU D")
    row = zoo.measure_zoo(["tiny_zoo_test"], (1,), fingerprint=fp, **FAST)["rows"]["tiny_zoo_test"]
    flat = zoo.zoo_table(["tiny_zoo_test"], fingerprint=fp)["rows"][0]
    if tf.config.list_physical_devices("GPU"):
        assert (row["device"], flat["device"]) == ("GPU", "GPU") and row["gpu"] != NO_GPU
    else:  # a CPU-only machine says so in every row
        assert (row["device"], row["gpu"]) == ("CPU", NO_GPU)
        assert (flat["device"], flat["gpu"]) == ("CPU", NO_GPU)
    assert timing_device([]) == {"device": "CPU", "gpu": NO_GPU, "tf_device": "/CPU:0"}
    gpu = timing_device([tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")])
    assert gpu["device"] == "GPU" and gpu["tf_device"] == "/GPU:0" and gpu["gpu"]


def test_measuring_is_a_job_whose_rows_reach_the_cache_and_its_run_folder():
    from lib.jobs import zoo_tasks
    from lib.jobs.embedded import EmbeddedBackend
    from lib.status import DONE

    backend = EmbeddedBackend()
    spec = zoo_tasks.zoo_measure_spec(["tiny_zoo_test"], [1], min_runs=1, budget_s=0.0, isolate=False)
    job = backend.handle(backend.submit(spec))
    assert job.wait(120)
    snap = job.snapshot()
    assert snap["status"] == DONE, snap["error"]
    assert snap["done"] == snap["total"] == 1  # progress counted per backbone
    result = snap["result"]
    row = result["rows"]["tiny_zoo_test"]
    assert row["worker"]["backend"] == "embedded" and row["worker"]["job"] == job.id
    assert row["host"] == result["worker"]["host"] and row["timings"]["1"]["runs"] >= 1
    assert zoo.load_zoo_cache(result["fingerprint"])["rows"]["tiny_zoo_test"]["worker"] == row["worker"]
    run_dir = runs_dir() / job.id
    assert zoo_tasks.load_result(run_dir) == json.loads(json.dumps(result))  # what a front-end reads

    # A front-end whose cache folder is not the worker's files the rows under the worker's table.
    elsewhere = {**result, "fingerprint": _fake_fingerprint("a worker's CPU")}
    assert zoo_tasks.store_result(elsewhere) == elsewhere["fingerprint"]
    assert zoo.load_zoo_cache(elsewhere["fingerprint"])["rows"]["tiny_zoo_test"] == row
    assert zoo_tasks.store_result(None) is None


def test_a_measuring_spec_checks_its_batches_and_names():
    from lib.errors import TransferLabError
    from lib.jobs import zoo_tasks

    with pytest.raises(TransferLabError, match="0"):
        zoo_tasks.zoo_measure_spec(["tiny_random"], [0])
    with pytest.raises(TransferLabError, match="names="):
        zoo_tasks.zoo_measure_spec(["tiny_random", ""], [1])
    spec = zoo_tasks.zoo_measure_spec(None, [1, 32])
    assert spec.params["names"] is None and spec.task == zoo_tasks.ZOO_MEASURE_TASK
