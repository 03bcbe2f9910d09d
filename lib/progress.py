"""The one progress-callback type every long-running lib function takes."""

from __future__ import annotations

from collections.abc import Callable

# on_progress(done, total, message): called from the working thread; never draws or prints.
ProgressFn = Callable[[int, int, str], None]
