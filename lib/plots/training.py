"""Figures for training: learning curves, per-batch loss, confusion matrix, runs compared, the
learning-rate finder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lib.plots.text import plot_text, plot_texts

TRAIN_COLOR = "#2563eb"
VAL_COLOR = "#f59e0b"
PHASE_LINE_COLOR = "#6b7280"
RUN_COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#f97316",
              "#84cc16", "#ec4899", "#64748b")
METRICS = ("loss", "accuracy")
LABELS = {"loss": "Loss", "accuracy": "Accuracy", "val_loss": "Validation loss",
          "val_accuracy": "Validation accuracy"}
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 30}


def _check_metric(metric: str, allowed: Sequence[str]) -> None:
    if metric not in allowed:
        raise ValueError(f"Received `metric={metric!r}`; use one of {', '.join(allowed)}.")


def _curve(history: pd.DataFrame, column: str) -> tuple[list, list]:
    if history is None or history.empty or column not in history:
        return [], []
    rows = history[["epoch", column]].dropna()
    return rows["epoch"].tolist(), rows[column].astype(float).tolist()


def fine_tune_start(history: pd.DataFrame) -> float | None:
    """The epoch where fine-tuning begins (between the last frozen and first fine-tune epoch)."""
    if history is None or history.empty or "phase" not in history:
        return None
    tuned = history[history["phase"] == "fine_tune"]
    if tuned.empty:
        return None
    return float(tuned["epoch"].min()) - 0.5


def make_history_figure(history_df: pd.DataFrame, metric: str = "loss",
                        overlay: pd.DataFrame | None = None, overlay_name: str = "scratch") -> go.Figure:
    """Per-epoch training and validation curves, with a line where fine-tuning starts.

    Args:
        history_df: rows with `epoch`, `phase`, `<metric>` and `val_<metric>`.
        metric: "loss" or "accuracy". Defaults to "loss".
        overlay: another history (e.g. the from-scratch baseline) drawn dashed. Defaults to None.
        overlay_name: legend prefix for the overlay. Defaults to "scratch".

    Returns:
        A Plotly line chart.
    """
    _check_metric(metric, METRICS)
    fig = go.Figure()
    for column, color, name in ((metric, TRAIN_COLOR, "train"), (f"val_{metric}", VAL_COLOR, "val")):
        x, y = _curve(history_df, column)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name,
                                 line={"color": color},
                                 hovertemplate=f"epoch %{{x}}<br>{name} {metric} %{{y:.4f}}<extra></extra>"))
        if overlay is not None:
            x, y = _curve(overlay, column)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{plot_text(overlay_name)} {name}",
                                     line={"color": color, "dash": "dash"},
                                     hovertemplate=f"epoch %{{x}}<br>%{{fullData.name}} {metric} "
                                                   "%{y:.4f}<extra></extra>"))
    start = fine_tune_start(history_df)
    if start is not None:
        fig.add_vline(x=start, line={"color": PHASE_LINE_COLOR, "dash": "dot"},
                      annotation_text="fine-tuning starts", annotation_position="top left")
    fig.update_layout(title=LABELS[metric], height=320, margin=MARGIN,
                      xaxis={"title": "epoch", "dtick": 1 if _epochs(history_df, overlay) <= 20 else None},
                      yaxis={"title": metric, **({"range": [0, 1.02]} if metric == "accuracy" else {})},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _epochs(*histories: pd.DataFrame | None) -> int:
    return max((len(h) for h in histories if h is not None), default=0)


def make_batch_loss_figure(rows: Sequence[dict]) -> go.Figure:
    """The per-batch training loss, as it arrives.

    Args:
        rows: `on_batch_end` dicts (`phase`, `epoch`, `batch`, `batches`, `loss`).

    Returns:
        A Plotly line chart with x = batches seen (fractional epochs on hover).
    """
    x, y, text = [], [], []
    for i, row in enumerate(rows):
        if row.get("loss") is None:
            continue
        x.append(i + 1)
        y.append(float(row["loss"]))
        text.append(f"{row.get('phase', '')} epoch {row.get('epoch')} batch "
                    f"{row.get('batch')}/{row.get('batches')}")
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", line={"color": TRAIN_COLOR}, text=text,
                               hovertemplate="%{text}<br>loss %{y:.4f}<extra></extra>"))
    fig.update_layout(title="Training loss per batch", height=260, margin=MARGIN,
                      xaxis={"title": "batch"}, yaxis={"title": "loss"})
    return fig


def make_confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> go.Figure:
    """A confusion-matrix heatmap (rows = true class, columns = predicted class).

    Each cell carries `customdata = [true_index, pred_index]`, so a click on it tells the page
    which images to show.

    Args:
        confusion: counts, `confusion[true][pred]`.
        classes: class names in label order.

    Returns:
        A Plotly heatmap with counts written in the cells.
    """
    matrix = np.asarray(confusion, dtype=np.int64)
    n = len(classes)
    if matrix.shape != (n, n):
        raise ValueError(f"Received a confusion matrix of shape {matrix.shape} for {n} classes.")
    names = plot_texts(classes)  # the page maps a click through customdata, never the names
    customdata = [[[t, p] for p in range(n)] for t in range(n)]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=names, y=names, customdata=customdata, colorscale="Blues", showscale=False,
        text=matrix.astype(str), texttemplate="%{text}",
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>",
    ))
    side = min(700, 160 + 50 * n)
    fig.update_layout(title="Confusion matrix", height=side, margin=MARGIN,
                      xaxis={"title": "predicted", "type": "category"},
                      yaxis={"title": "true", "type": "category", "autorange": "reversed"})
    return fig


def make_runs_overlay_figure(histories: dict[str, pd.DataFrame], metric: str = "val_accuracy") -> go.Figure:
    """Several runs' curves on one chart.

    Args:
        histories: run name -> history DataFrame.
        metric: a history column: "loss", "accuracy", "val_loss" or "val_accuracy".
            Defaults to "val_accuracy".

    Returns:
        A Plotly line chart, one line per run.
    """
    _check_metric(metric, tuple(LABELS))
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        x, y = _curve(history, metric)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=plot_text(name),
                                 line={"color": RUN_COLORS[i % len(RUN_COLORS)]},
                                 hovertemplate=("%{fullData.name}<br>epoch %{x}<br>"
                                                f"{metric} %{{y:.4f}}<extra></extra>")))
    fig.update_layout(title=LABELS[metric], height=360, margin=MARGIN, xaxis={"title": "epoch"},
                      yaxis={"title": metric}, legend={"orientation": "h", "y": -0.25})
    return fig


def make_lr_find_figure(rates: Sequence[float], losses: Sequence[float],
                        suggestion: float | None = None) -> go.Figure:
    """The learning-rate finder's curve: smoothed loss against rate (log x), the suggestion marked.

    Args:
        rates: the swept rates, increasing.
        losses: the smoothed training loss after each rate's step.
        suggestion: the suggested rate, marked with a point on the curve and a dotted line.
            Defaults to None (no mark).

    Returns:
        A Plotly line chart with a logarithmic rate axis.
    """
    if len(rates) != len(losses):
        raise ValueError(f"Received {len(rates)} rates and {len(losses)} losses; give one loss per rate.")
    fig = go.Figure(go.Scatter(x=list(rates), y=list(losses), mode="lines", name="loss",
                               line={"color": TRAIN_COLOR},
                               hovertemplate="rate %{x:.2e}<br>loss %{y:.4f}<extra></extra>"))
    if suggestion is not None and len(rates):
        # The curve's loss at the suggestion, interpolated in log rate.
        y = float(np.interp(np.log(suggestion), np.log(np.asarray(rates, float)), np.asarray(losses, float)))
        fig.add_trace(go.Scatter(x=[suggestion], y=[y], mode="markers", name=f"suggestion {suggestion:.1e}",
                                 marker={"color": VAL_COLOR, "size": 12, "symbol": "diamond"},
                                 hovertemplate="suggested rate %{x:.2e}<extra></extra>"))
        fig.add_vline(x=np.log10(suggestion), line={"color": PHASE_LINE_COLOR, "dash": "dot"})
    fig.update_layout(title="Learning-rate finder", height=320, margin=MARGIN,
                      xaxis={"title": "learning rate", "type": "log"},
                      yaxis={"title": "smoothed training loss"},
                      legend={"orientation": "h", "y": -0.25})
    return fig
