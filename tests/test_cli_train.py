"""`python -m lib train`, `fine-tune` and `evaluate`: JSON shapes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_image_folder

from lib.cli import main
from lib.training import TrainConfig, train

TRAIN_KEYS = {"run", "val_accuracy", "fine_tune_val_accuracy", "epochs", "seconds"}
EVALUATE_KEYS = {"accuracy", "n", "classes", "confusion", "per_class"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "toy": make_image_folder(root / "toy", {"cat": 10, "dog": 10}),
        "other": make_image_folder(root / "other", {"bird": 4, "fish": 4}, seed=1),
        "root": root,
    }


@pytest.fixture(scope="module")
def trained_run(folders, tiny_backbone) -> Path:
    config = TrainConfig(backbone="tiny_random", data=str(folders["toy"]), epochs=2, batch_size=4,
                         test_split=0.0)
    return train(config, backbone=tiny_backbone, run_dir=folders["root"] / "run").run_dir


def _run(capsys, argv: list[str]) -> tuple[int, object, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_train_prints_progress_and_the_json_summary(folders, capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, value, err = _run(capsys, [
        "train", "--data", str(folders["toy"]), "--backbone", "tiny_random", "--out", str(out_dir),
        "--epochs", "2", "--fine-tune-epochs", "1", "--unfreeze", "4", "--batch-size", "4",
        "--val-split", "0.3", "--seed", "1",
    ])
    assert code == 0, err
    assert set(value) == TRAIN_KEYS
    assert value["run"] == str(out_dir) and (out_dir / "model.keras").is_file()
    assert 0.0 <= value["val_accuracy"] <= 1.0
    assert 0.0 <= value["fine_tune_val_accuracy"] <= 1.0
    assert value["epochs"] == 3 and value["seconds"] > 0
    assert "frozen epoch 1/" in err and "fine_tune epoch 3/" in err


def test_train_without_fine_tuning_reports_null(folders, capsys, tmp_path):
    code, value, err = _run(capsys, [
        "train", "--data", str(folders["toy"]), "--backbone", "tiny_random",
        "--out", str(tmp_path / "r"), "--epochs", "1", "--augment", "--no-feature-cache",
    ])
    assert code == 0, err
    assert value["fine_tune_val_accuracy"] is None and value["epochs"] == 1


def test_scratch_flag_trains_the_baseline(folders, capsys, tmp_path):
    code, value, err = _run(capsys, [
        "train", "--data", str(folders["toy"]), "--backbone", "tiny_random",
        "--out", str(tmp_path / "s"), "--epochs", "1", "--scratch",
    ])
    assert code == 0, err
    assert set(value) == TRAIN_KEYS and value["fine_tune_val_accuracy"] is None


def test_evaluate_prints_the_report(trained_run, folders, capsys):
    code, value, err = _run(capsys, ["evaluate", "--run", str(trained_run),
                                     "--data", str(folders["toy"])])
    assert code == 0, err
    assert set(value) == EVALUATE_KEYS
    assert value["n"] == 20 and value["classes"] == ["cat", "dog"]
    assert sum(map(sum, value["confusion"])) == 20
    assert set(value["per_class"]["cat"]) == {"precision", "recall", "support"}


def test_evaluate_refuses_other_classes(trained_run, folders, capsys):
    code, value, err = _run(capsys, ["evaluate", "--run", str(trained_run),
                                     "--data", str(folders["other"])])
    assert code == 2 and value is None
    assert err.startswith("error: ") and "do not match" in err and "bird" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-split", "1.5"], "val_split=1.5"),
        (["--optimizer", "adagrad"], "optimizer='adagrad'"),
        (["--epochs", "0"], "epochs=0"),
        (["--backbone", "nope"], "Unknown backbone `nope`"),
    ],
)
def test_train_user_errors_are_one_line(folders, capsys, tmp_path, extra, message):
    argv = ["train", "--data", str(folders["toy"]), "--backbone", "tiny_random",
            "--out", str(tmp_path / "r"), *extra]
    code, value, err = _run(capsys, argv)
    assert code == 2 and value is None
    assert message in err and "Traceback" not in err


def test_train_refuses_missing_data_and_an_occupied_out(trained_run, folders, capsys, tmp_path):
    code, _, err = _run(capsys, ["train", "--data", str(tmp_path / "missing"),
                                 "--backbone", "tiny_random"])
    assert code == 2 and "missing" in err
    code, _, err = _run(capsys, ["train", "--data", str(folders["toy"]), "--backbone",
                                 "tiny_random", "--out", str(trained_run)])
    assert code == 2 and "already holds a run" in err


def test_evaluate_on_a_missing_run_is_a_user_error(folders, capsys, tmp_path):
    code, _, err = _run(capsys, ["evaluate", "--run", str(tmp_path / "nope"),
                                 "--data", str(folders["toy"])])
    assert code == 2 and "does not exist" in err


def test_argparse_defaults_are_the_train_config_defaults(folders):
    from lib.cli import build_parser
    from lib.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--data", str(folders["toy"])])
    assert config_from_args(args) == TrainConfig(data=str(folders["toy"]))
    tune = build_parser().parse_args(["fine-tune", "--run", "r", "--epochs", "1"])
    assert (tune.unfreeze, tune.lr_factor) == (TrainConfig().unfreeze, TrainConfig().fine_tune_lr_factor)


def test_fine_tune_prints_the_train_json_and_leaves_the_run_as_it_was(trained_run, capsys, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    out_dir = tmp_path / "tuned"
    code, value, err = _run(capsys, ["fine-tune", "--run", str(trained_run), "--epochs", "2",
                                     "--unfreeze", "4", "--lr-factor", "1", "--out", str(out_dir)])
    assert code == 0, err
    assert set(value) == TRAIN_KEYS
    assert value["run"] == str(out_dir) and (out_dir / "model.keras").is_file()
    assert 0.0 <= value["val_accuracy"] <= 1.0 and 0.0 <= value["fine_tune_val_accuracy"] <= 1.0
    assert value["epochs"] == 4  # the run's 2 frozen epochs, then 2 fine-tuning epochs
    assert "fine_tune epoch 3/" in err
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before
    config = json.loads((out_dir / "config.json").read_text())
    assert config["fine_tuned_from"] == str(trained_run) and config["unfrozen_layers"] == ["block3_conv"]
    code, value, err = _run(capsys, ["fine-tune", "--run", str(trained_run), "--epochs", "1",
                                     "--unfreeze-from", "block2_conv"])
    assert code == 0, err
    assert Path(value["run"]) != trained_run and (Path(value["run"]) / "model.keras").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "epochs=0"),
        (["--epochs", "1", "--unfreeze", "999"], "unfreeze=999"),
        (["--epochs", "1", "--unfreeze-from", "nope"], "from_layer=nope"),
        (["--epochs", "1", "--lr-factor", "0"], "lr_factor=0.0"),
    ],
)
def test_fine_tune_user_errors_are_one_line_and_write_nothing(trained_run, capsys, tmp_path, extra,
                                                              message):
    code, value, err = _run(capsys, ["fine-tune", "--run", str(trained_run), "--out",
                                     str(tmp_path / "t"), *extra])
    assert code == 2 and value is None
    # Progress lines ("Loading ...") may come first; the error is one line, with no traceback.
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (tmp_path / "t").exists()


def test_fine_tune_refuses_a_missing_run_and_a_scratch_run(folders, capsys, tmp_path):
    code, _, err = _run(capsys, ["fine-tune", "--run", str(tmp_path / "nope"), "--epochs", "1"])
    assert code == 2 and "not a TransferLab run" in err
    code, value, err = _run(capsys, ["train", "--data", str(folders["toy"]), "--backbone",
                                     "tiny_random", "--out", str(tmp_path / "s"), "--epochs", "1",
                                     "--scratch"])
    assert code == 0, err
    code, _, err = _run(capsys, ["fine-tune", "--run", str(tmp_path / "s"), "--epochs", "1"])
    assert code == 2 and "from scratch" in err
