"""Text from people (class, file, run and backbone names) made safe for Plotly.

Plotly renders a subset of HTML in titles, axis and tick labels, legend entries, annotations and
hover labels (`<b>`, `<br>`, `<a href=…>`, `<span style=…>`), and a hover template substitutes
`%{…}` in its literal text. A class folder named `<b>cat</b>` would draw in bold, and one named
`%{y}` would print a number. Every figure passes such strings through `plot_text` first; Plotly
turns the entities back into the characters when it draws, so people see the name as written.
"""

from __future__ import annotations

from collections.abc import Iterable

# `&` first, so the entities the others introduce are not escaped twice.
PLOT_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("%{", "%&#123;"))


def plot_text(value: object) -> str:
    """`str(value)` with `&`, `<`, `>` as entities and `%{` broken, for any Plotly text.

    Args:
        value: a name (anything `str` accepts).

    Returns:
        Text Plotly draws literally, e.g. ``plot_text("<b>a</b>") == "&lt;b&gt;a&lt;/b&gt;"``.
    """
    text = str(value)
    for raw, entity in PLOT_ESCAPES:
        text = text.replace(raw, entity)
    return text


def plot_texts(values: Iterable[object]) -> list[str]:
    """`plot_text` of each value, in order."""
    return [plot_text(v) for v in values]
