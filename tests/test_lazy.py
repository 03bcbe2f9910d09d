"""`lib.lazy`: modules and package names imported at first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lib.lazy import lazy_exports, lazy_module


def test_lazy_module_imports_at_the_first_attribute_lookup():
    module = lazy_module("json")
    assert "not imported yet" in repr(module)
    assert module.dumps([1]) == "[1]"
    assert "imported" in repr(module) and "not" not in repr(module)


def test_lazy_exports_import_each_name_once_and_refuse_unknown_names():
    package = {"__name__": "fake_package"}
    getattr_, dir_ = lazy_exports(package, {"json": ("dumps",), "textwrap": ("dedent",)})
    assert dir_() == ["__name__", "dedent", "dumps"]
    import json

    assert getattr_("dumps") is json.dumps and package["dumps"] is json.dumps  # kept for next time
    with pytest.raises(AttributeError, match="fake_package.*loads"):
        getattr_("loads")


def test_training_and_inside_packages_load_tensorflow_only_when_a_model_name_is_used():
    code = ("import sys, lib.training, lib.inside\n"
            "from lib.training import TrainConfig\n"
            "assert 'tensorflow' not in sys.modules, 'imported too early'\n"
            "from lib.inside import IdealSettings\n"
            "assert 'tensorflow' in sys.modules\n"
            "assert 'train' in dir(lib.training) and 'attack' in dir(lib.inside)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
