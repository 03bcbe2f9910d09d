"""The Lessons page's live parts, one module per lesson (Streamlit; the computations are
`lib.lessons`).

`LIVE_VIEWS` maps a lesson's name to `view(lesson, interactive)`, which draws its live step: with
widgets when `interactive`, as a still copy beside "what to notice" otherwise. A lesson added to
`lib.lessons.registry` adds its view here.
"""

from __future__ import annotations

from collections.abc import Callable

from lib.lessons import Lesson
from lib.ui.lessons.adversarial import adversarial_ui
from lib.ui.lessons.batchnorm import batchnorm_ui
from lib.ui.lessons.features import features_ui
from lib.ui.lessons.finetune import finetune_ui
from lib.ui.lessons.ideal import ideal_ui
from lib.ui.lessons.transfer import transfer_ui, when_fails_ui

LIVE_VIEWS: dict[str, Callable[[Lesson, bool], None]] = {
    "features": features_ui,
    "adversarial": adversarial_ui,
    "ideal-image": ideal_ui,
    "frozen-vs-finetune": finetune_ui,
    "batchnorm-pitfall": batchnorm_ui,
    "transfer-vs-scratch": transfer_ui,
    "when-transfer-fails": when_fails_ui,
}
