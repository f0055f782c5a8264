"""Calibration beside accuracy: the expected calibration error (ECE, 15 bins, :func:`bench.core.metrics.
expected_calibration_error`) each result records for protocols that give class probabilities, per protocol as
extractors x tasks of "ECE (accuracy)". A probe can be accurate and overconfident; this is where the board says so.
"""

from __future__ import annotations

import pandas as pd

from bench.core.metrics import ECE
from leaderboard.frames import frame_html, frame_md

NOTE = ("Expected calibration error of the predicted class's probability (15 equal-width bins; mean over folds; lower "
        "is better), accuracy in brackets, both percent. A result written before ECE was recorded shows none; "
        "`bench run` recomputes it (evaluation code version 4).")


def calibration_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Protocol -> extractors x tasks of "ECE (accuracy)" text, for the protocols whose results hold an ECE."""
    if f"{ECE}_mean" not in results:
        return {}
    held = results[results[f"{ECE}_mean"].notna()]
    out = {}
    for protocol, rows in held.groupby("protocol", sort=True):
        cells = {(r["extractor"], r["task"]): f"{100 * r[f'{ECE}_mean']:.1f} ({100 * r['accuracy_mean']:.1f})"
                 for _, r in rows.iterrows()}
        table = pd.DataFrame(index=sorted({e for e, _ in cells}), columns=sorted({t for _, t in cells}), dtype=object)
        for (extractor, task), text in cells.items():
            table.loc[extractor, task] = text
        out[str(protocol)] = table.fillna("—")
    return out


def calibration_md(results: pd.DataFrame, escape) -> list[str]:
    tables = calibration_tables(results)
    if not tables:
        return []
    parts = ["\n## Calibration\n", NOTE]
    for protocol, table in tables.items():
        parts += [f"\n### {escape(protocol)}\n", frame_md(table, "extractor", escape)]
    return parts


def calibration_html(results: pd.DataFrame) -> str:
    from html import escape

    tables = calibration_tables(results)
    if not tables:
        return ""
    import re

    note = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(NOTE))  # the note's commands, as code
    parts = [f'<h2 id="calibration">Calibration</h2><p>{note}</p>']
    for protocol, table in tables.items():
        parts.append(f'<h3>{escape(protocol)}</h3><div class="scroll">{frame_html(table, "extractor")}</div>')
    return "".join(parts)
