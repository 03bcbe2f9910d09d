"""A lesson's result on disk: its images as PNG, its figures as HTML, its numbers as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from lib.images import save_image

NUMBERS_FILE = "numbers.json"


def write_lesson_result(result: dict, out: str | Path) -> list[str]:
    """Writes `images/*.png`, `figures/*.html` and `numbers.json` under `out`.

    Figures load plotly.js from its CDN (a projector on the network shows them; the PNGs work
    offline).

    Returns:
        The files written, as strings.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in result.get("images", {}).items():
        written.append(str(save_image(image, out / f"{name}.png")))
    for name, figure in result.get("figures", {}).items():
        path = out / f"{name}.html"
        figure.write_html(path, include_plotlyjs="cdn")
        written.append(str(path))
    numbers_path = out / NUMBERS_FILE
    numbers_path.write_text(json.dumps(result.get("numbers", {}), indent=2, default=str))
    written.append(str(numbers_path))
    return written
