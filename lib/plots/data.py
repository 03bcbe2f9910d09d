"""Figures for the Data page: images per class, a sample grid, and split sizes."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from lib.plots.text import plot_text, plot_texts

BAR_COLOR = "#2563eb"
SPLIT_COLORS = {"train": "#2563eb", "val": "#f59e0b", "test": "#10b981"}
# The grid shows at most this many classes, so a 100-class set does not draw 600 thumbnails.
MAX_GRID_CLASSES = 12
THUMB_PX = 64
ROW_PX = 90


def make_class_count_figure(counts: dict[str, int]) -> go.Figure:
    """Bars of usable images per class.

    Args:
        counts: class name -> number of images (e.g. `DataReport.counts`).

    Returns:
        A Plotly bar chart, classes in the given order.
    """
    names = plot_texts(counts)
    values = [int(v) for v in counts.values()]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            marker_color=BAR_COLOR,
            text=values,
            textposition="auto",
            hovertemplate="%{x}: %{y} images<extra></extra>",
        )
    )
    fig.update_layout(
        title="Images per class",
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 30},
        xaxis={"title": "class", "type": "category"},
        yaxis={"title": "images"},
    )
    return fig


def thumbnail_uri(image: np.ndarray) -> str:
    """Encodes an (H, W, 3) pixel array as a PNG data URI (far lighter than a JSON pixel list)."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def make_sample_grid_figure(
    samples, per_class: int = 6, size: int = THUMB_PX, seed: int = 0
) -> go.Figure:
    """A grid of thumbnails: one row per class.

    Args:
        samples: class name -> list of (H, W, 3) pixel arrays, or a `DatasetIndex` to draw
            `per_class` random images per class from.
        per_class: thumbnails per row. Defaults to 6.
        size: thumbnail side in pixels when sampling from an index. Defaults to 64.
        seed: which images to sample from an index. Defaults to 0.

    Returns:
        A Plotly figure of image subplots (at most `MAX_GRID_CLASSES` rows).
    """
    if hasattr(samples, "records"):
        from lib.data.sources import sample_images

        samples = sample_images(samples, per_class=per_class, size=size, seed=seed)
    rows = list(samples.items())[:MAX_GRID_CLASSES]
    cols = max(1, min(per_class, max((len(images) for _, images in rows), default=1)))
    fig = make_subplots(
        rows=max(1, len(rows)),
        cols=cols,
        horizontal_spacing=0.01,
        vertical_spacing=0.02 if len(rows) > 1 else 0.0,
    )
    for r, (name, images) in enumerate(rows, start=1):
        for c, image in enumerate(images[:cols], start=1):
            fig.add_trace(
                go.Image(source=thumbnail_uri(image), name=plot_text(name), hoverinfo="name"), r, c
            )
        fig.update_yaxes(title_text=plot_text(name), row=r, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(
        title="Samples per class",
        height=60 + ROW_PX * max(1, len(rows)),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        showlegend=False,
    )
    return fig


def make_split_count_figure(table: dict[str, dict[str, int]]) -> go.Figure:
    """Stacked bars of train/validation/test images per class.

    Args:
        table: split name -> class name -> images (as `Split.counts(class_names)` returns).

    Returns:
        A Plotly stacked bar chart.
    """
    fig = go.Figure()
    for part, per_class in table.items():
        if not sum(per_class.values()):
            continue
        fig.add_trace(
            go.Bar(
                name=plot_text(part),
                x=plot_texts(per_class),
                y=list(per_class.values()),
                marker_color=SPLIT_COLORS.get(part),
                hovertemplate="%{fullData.name} %{x}: %{y}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        title="Split sizes per class",
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 30},
        xaxis={"type": "category"},
        yaxis={"title": "images"},
    )
    return fig
