"""The Fine-tune page: its defaults come from `TrainConfig()`, it says how the best epoch is chosen,
and its learning-rate finder draws loss against rate with the suggestion marked."""

from __future__ import annotations

import json

import pytest

from lib.training import SELECTED_BY, TrainConfig
from lib.training.config import SUGGESTED_FINE_TUNE_EPOCHS
from tests.test_app import assert_clean, new_app, texts, tiny_defaults, wait_for_job  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_fine_tune_page_defaults_selection_note_and_lr_finder(tiny_defaults):  # noqa: F811
    defaults = TrainConfig()
    at = new_app().run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_epochs").set_value(2).run()
    at.button(key="train_start").click().run()
    assert wait_for_job(at, "train_job")["status"] == "done"
    at.switch_page("pages/fine_tune.py").run()
    assert_clean(at)
    # tiny_random has 3 blocks above its stem; the default asks for more, so all 3.
    assert at.slider(key="finetune_unfreeze").value == min(defaults.unfreeze_blocks, 3)
    assert at.number_input(key="finetune_epochs").value == SUGGESTED_FINE_TUNE_EPOCHS
    closest = min((1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                  key=lambda v: abs(v - defaults.learning_rate * defaults.fine_tune_lr_factor))
    assert at.select_slider(key="finetune_lr").value == closest
    assert SELECTED_BY in texts(at)
    charts = len(at.get("plotly_chart"))
    at.button(key="finetune_lr_find").click().run()
    assert_clean(at)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == charts + 1
    finder = next(s for s in specs if s["layout"].get("xaxis", {}).get("type") == "log")
    assert len(finder["data"]) == 2 and len(finder["data"][1]["x"]) == 1  # curve + suggestion
    assert "Suggested peak rate" in texts(at)
