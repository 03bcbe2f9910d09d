"""Text a visitor chose (class folder names, file names, dataset names) shown as plain text.

Streamlit renders markdown in `st.markdown`, `st.warning`, `st.error`, captions and more: a class
folder called `**x**` or `[click](http://...)` would be drawn bold or as a link, `:red[x]` in
colour, `$x$` as maths. `plain(text)` escapes every character those use, so the text reads exactly
as it was typed. Only the UI escapes: lib's messages stay plain text for the CLI.
"""

from __future__ import annotations

import re

# CommonMark's backslash-escapable punctuation (all of ASCII's), which covers Streamlit's own
# additions: ":" (emoji shortcodes, :color[...], :material/icon:) and "$" (LaTeX).
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def plain(text: object) -> str:
    """`text` escaped so markdown shows it as typed (one line: line breaks become spaces).

    Args:
        text: anything; it is turned into a string first.

    Returns:
        The escaped string, for `st.markdown`, `st.warning`, `st.error`, captions and labels.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))
