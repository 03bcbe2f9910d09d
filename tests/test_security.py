"""A hosted server must not run a visitor's code or show the server's files.

The attack this guards against: a "dataset" zip whose class folder holds a SavedModel, added as a TF
Hub backbone, whose serving function writes a file when TensorFlow runs it. Every way a visitor or a
CLI user can offer such a model is tried, and each must be refused with a message, the file never
written.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lib.backbones import get_spec, hub_compat
from lib.backbones.hub_safety import check_saved_model, forbidden_ops
from lib.data import archives
from lib.data.roots import check_server_folder
from lib.errors import TransferLabError
from tests.conftest import run_lib_in_process

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 60
LONG_NAME = "a" * 296 + ".png"  # 300 bytes: over what file systems accept for one name


def write_hostile_saved_model(folder: Path, target: Path) -> Path:
    """A 32-px image feature-vector SavedModel whose serving function writes `target` when run."""
    import tensorflow as tf

    class Hostile(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones((3, 4)))

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def serve(self, images):
            tf.io.write_file(str(target), "written by a visitor's model")
            return {"feature_vector": tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.w)}

    module = Hostile()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def zip_folder_with_images(model_dir: Path | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A cats/dogs dataset zip; `model_dir` is packed inside `cats/`, as the attacker did."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, name in enumerate(("cats", "dogs")):
            for i in range(3):
                zf.writestr(f"{name}/{i}.png", png_bytes(10 * c + i))
        if model_dir is not None:
            for path in model_dir.rglob("*"):
                if path.is_file():
                    zf.write(path, f"cats/model/{path.relative_to(model_dir)}")
        for entry, data in (extra or {}).items():
            zf.writestr(entry, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """(the hostile SavedModel folder, the file it would write)."""
    base = tmp_path_factory.mktemp("hostile")
    target = base / "pwned.txt"
    return write_hostile_saved_model(base / "model", target), target


def test_the_hostile_model_really_writes_when_tensorflow_runs_it(hostile, tmp_path):
    """Control: run unchecked by TensorFlow (in another process), the model does write its file."""
    model, _ = hostile
    target = tmp_path / "control.txt"
    control = write_hostile_saved_model(tmp_path / "control_model", target)
    code = ("import sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
            "m.signatures['serving_default'](images=tf.zeros((1, 32, 32, 3)))")
    subprocess.run([sys.executable, "-c", code, str(control)], check=True, capture_output=True, timeout=120)
    assert target.is_file()
    assert "WriteFile" in forbidden_ops((model / "saved_model.pb").read_bytes())


def test_op_check_names_the_op_and_passes_clean_exports(hostile, tmp_path):
    model, target = hostile
    with pytest.raises(TransferLabError, match="WriteFile"):
        check_saved_model(model)
    from lib.backbones.export import export_hub

    export_hub("tiny_random", tmp_path / "clean")
    check_saved_model(tmp_path / "clean")  # our own exports hold only pure tensor ops
    assert not target.exists()


def test_hub_handle_outside_the_trusted_roots_is_refused(hostile, monkeypatch, tmp_path):
    model, target = hostile
    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(tmp_path))  # trusts another folder only
    with pytest.raises(TransferLabError, match="TRANSFERLAB_HUB_ROOTS"):
        get_spec(str(model))
    monkeypatch.delenv("TRANSFERLAB_HUB_ROOTS")  # default: the TF Hub download cache only
    with pytest.raises(TransferLabError, match="Refusing"):
        hub_compat.hub_spec(str(model))
    assert not target.exists()


def test_hub_handle_in_a_trusted_root_is_still_checked_for_ops(hostile, monkeypatch):
    model, target = hostile
    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(model.parent))
    with pytest.raises(TransferLabError, match="WriteFile"):
        get_spec(str(model))
    assert not target.exists()


def test_a_model_inside_an_uploaded_zip_is_never_loaded(hostile, monkeypatch, cache_root):
    model, target = hostile
    index = archives.load_zip(zip_folder_with_images(model), "pets.zip")
    assert index.report.counts == {"cats": 3, "dogs": 3}
    extracted = next(Path(r.source) for r in index.records if "/cats/" in r.source).parent / "model"
    assert (extracted / "saved_model.pb").is_file()
    # Even an operator who trusted the whole cache would not have uploads loaded as models.
    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(cache_root))
    with pytest.raises(TransferLabError, match="uploads and datasets"):
        get_spec(str(extracted))
    assert not target.exists()


@pytest.mark.parametrize("command", [
    ["train", "--data", "builtin:faces", "--epochs", "1"],
    ["zoo", "--measure", "--batch", "1"],
])
def test_cli_backbone_path_is_refused(hostile, tmp_path, command):
    model, target = hostile
    args = [*command, "--backbone" if command[0] == "train" else "--backbones", str(model)]
    if command[0] == "train":
        args += ["--out", str(tmp_path / "run")]
    for roots in ("", str(model.parent)):  # untrusted folder; trusted folder but hostile ops
        env = {**os.environ, "TRANSFERLAB_HUB_ROOTS": roots} if roots else {
            k: v for k, v in os.environ.items() if k != "TRANSFERLAB_HUB_ROOTS"}
        proc = run_lib_in_process(args, env)  # the command's checks, not the process, are tested
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: Refusing"), proc.stderr
        assert "Traceback" not in proc.stderr
    assert not target.exists()


def test_a_saved_run_on_a_hostile_handle_does_not_load(hostile, tmp_path, monkeypatch):
    """A run's config names its backbone; reloading it goes through the same checks."""
    from lib.runs import load_trained_model

    model, target = hostile
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"backbone": str(model), "head": {}, "seed": 0}))
    (run / "labels.txt").write_text("cats\ndogs\n")
    (run / "checkpoints" / "head.weights.h5").write_bytes(b"not read: the backbone is refused first")
    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(model.parent))
    with pytest.raises(TransferLabError, match="WriteFile"):
        load_trained_model(run)
    assert not target.exists()


def test_zoo_page_refuses_an_uploaded_model_with_a_message(hostile, monkeypatch, cache_root):
    model, target = hostile
    index = archives.load_zip(zip_folder_with_images(model), "pets.zip")
    extracted = str(next(Path(r.source) for r in index.records if "/cats/" in r.source).parent / "model")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/zoo.py").run()
    before = at.session_state["zoo_selection"] if "zoo_selection" in at.session_state else None
    at.text_input(key="zoo_hub_handle").input(extracted).run()
    at.button(key="zoo_hub_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Refusing" in e.value for e in at.error)
    after = at.session_state["zoo_selection"] if "zoo_selection" in at.session_state else None
    assert after == before
    assert not target.exists()


def etc_names() -> set[str]:
    """Names in /etc long enough that finding one in a message means it was listed."""
    return {n for n in os.listdir("/etc") if len(n) >= 5}


def test_hosted_data_page_refuses_etc_without_listing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOSTED", "1")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DATA_ROOTS", str(tmp_path))  # the operator shares one folder
    (tmp_path / "etc_link").symlink_to("/etc")  # a link inside the shared folder leads nowhere else
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source_kind").set_value("Folder on the server").run()
    for path in ("/etc", str(tmp_path / "etc_link"), "/etc/../etc/ssl", "~/../etc"):
        at.text_input(key="data_folder").input(path).run()
        at.button(key="data_use_folder").click().run()
        assert not at.exception, [e.value for e in at.exception]
        errors = [e.value for e in at.error]
        assert errors and "only opens dataset folders under" in errors[-1], errors
        shown = "\n".join(errors + [m.value for m in at.markdown] + [c.value for c in at.caption])
        assert not [n for n in etc_names() if n in shown]
        assert at.session_state["data_spec"] != path


def test_hosted_server_shares_no_folders_by_default(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOSTED", "1")
    monkeypatch.delenv("TRANSFERLAB_DATA_ROOTS", raising=False)
    with pytest.raises(TransferLabError, match="does not open its own folders") as e:
        check_server_folder("/etc")
    assert not [n for n in etc_names() if n in str(e.value)]
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_source_kind").set_value("Folder on the server").run()
    assert not at.exception
    assert not at.text_input  # nothing to type a server path into
    assert any("upload a zip" in i.value for i in at.info)


def test_local_server_accepts_home_and_refuses_elsewhere(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFERLAB_HOSTED", raising=False)
    monkeypatch.delenv("TRANSFERLAB_DATA_ROOTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_server_folder(str(tmp_path / "pets")) == str((tmp_path / "pets").resolve())
    with pytest.raises(TransferLabError, match="only opens dataset folders under"):
        check_server_folder("/etc")


def test_zip_entry_name_of_300_bytes_is_skipped_and_listed(tmp_path):
    data = zip_folder_with_images(extra={f"cats/{LONG_NAME}": png_bytes(99)})
    index = archives.load_zip(data, "long.zip")
    assert index.report.counts == {"cats": 3, "dogs": 3}
    reasons = dict(index.report.skipped)
    assert any("longer than 255 bytes" in r for r in reasons.values()), reasons
    again = archives.load_zip(data, "long.zip")  # the cached extraction reports it too
    assert any("longer than 255 bytes" in r for _, r in again.report.skipped)
    # The CLI reports it as a skipped file, not a traceback.
    path = tmp_path / "long.zip"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "lib", "data", "--data", str(path)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "longer than 255 bytes" in proc.stdout and "Traceback" not in proc.stderr
