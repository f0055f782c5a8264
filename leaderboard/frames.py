"""A small table of text (rows x columns) as a Markdown or HTML table, for the board's secondary sections (the
generalisation matrices, calibration): names escaped, the corner cell saying what rows and columns are."""

from __future__ import annotations

from html import escape as html_escape
from typing import Callable

import pandas as pd


def frame_md(table: pd.DataFrame, corner: str, escape: Callable[[str], str]) -> str:
    """``table`` (text cells) in Markdown; ``escape``: the board's escaping of a name."""
    shown = table.copy()
    shown.index = pd.Index([escape(str(i)) for i in shown.index], name=corner)
    shown.columns = [escape(str(c)) for c in shown.columns]
    return shown.to_markdown(disable_numparse=True)


def frame_html(table: pd.DataFrame, corner: str, cell: Callable[[object, object, object], str] | None = None) -> str:
    """``table`` in HTML; ``cell(row, column, value)`` -> a ``<td>`` (default: the escaped text, right-aligned)."""
    def plain(row, column, value) -> str:
        return f'<td class="num">{html_escape(str(value))}</td>'

    cell = cell or plain
    head = "".join(f"<th>{html_escape(str(c))}</th>" for c in [corner, *table.columns])
    body = "".join(f'<tr><td class="txt">{html_escape(str(name))}</td>'
                   + "".join(cell(name, column, v) for column, v in zip(table.columns, values)) + "</tr>"
                   for name, values in zip(table.index, table.to_numpy()))
    return f'<table class="reported"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
