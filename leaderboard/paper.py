"""The DinoBloom paper's reported numbers (Tables 2 and 3), shown beside measured rows, never ranked with them.

Source: Koch, V., Wagner, S. J., Kazeminia, S., Sancar, E., Hehr, M., Schnabel, J. A., Peng, T., Marr, C.:
"DinoBloom: A Foundation Model for Generalizable Cell Embeddings in Hematology", MICCAI 2024 (arXiv:2404.05022),
Tables 2 (Acevedo, BMC: kNN-1, kNN-20, linear probe) and 3 (AML Hehr: ABMIL). Values in percent as printed;
``data/dinobloom_paper_results.csv`` holds them as printed, with our protocol names (knn1 -> knn-1, knn20 ->
knn-20, abmil -> abmil-paper) and the paper's data set names; ``PAPER_TASKS`` says which of our tasks each data
set is. The paper's "Acevedo" is ``acevedo-11``, the 11 file-name-prefix classes, not the 8 folders: measured
evidence in docs/tasks.md ("Which Acevedo the paper scored") and ``LABEL_SET_NOTE``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.metrics import WEIGHTED_F1

PAPER_CSV = Path(__file__).resolve().parent / "data" / "dinobloom_paper_results.csv"
CITATION = "Koch et al., DinoBloom, MICCAI 2024, Tables 2-3"
# The paper's data set -> the task(s) of ours its rows belong to (several where the evidence could not decide).
PAPER_TASKS = {"acevedo": ("acevedo-11",), "bmc": ("bmc",), "aml-hehr": ("aml-hehr",)}
# One line beside the paper's rows on every board (the numbers: docs/tasks.md, "Which Acevedo the paper scored").
LABEL_SET_NOTE = (
    "The paper's Acevedo rows stand under acevedo-11 (the 11 classes of the file-name prefix), not the 8 folders: "
    "in all 36 its weighted F1 is 5.0-7.7 points above balanced accuracy (5.0-6.4 at 85 or more); measured at the "
    "complete set's class proportions on the same features, the 11 classes give 4.1-7.1 throughout, the 8 folders "
    "0.4-3.9 with neural features and 0.6-0.7 where a probe reaches 90 (docs/tasks.md, \"Which Acevedo the paper "
    "scored\").")


def paper_rows() -> pd.DataFrame:
    """extractor, task, protocol, <metric>_mean / _std as fractions (like measured results), reported=True."""
    table = pd.read_csv(PAPER_CSV)
    unknown = sorted(set(table["task"]) - set(PAPER_TASKS))
    if unknown:
        raise ValueError(f"{PAPER_CSV}: data set(s) {unknown} have no entry in leaderboard.paper.PAPER_TASKS")
    table = table.assign(task=table["task"].map(PAPER_TASKS)).explode("task", ignore_index=True)
    wide = table.pivot_table(index=["extractor", "task", "protocol"], columns="metric", values=["value", "std"],
                             aggfunc="first")
    out = pd.DataFrame(index=wide.index).reset_index()
    for metric in table["metric"].unique():
        out[f"{metric}_mean"] = wide[("value", metric)].to_numpy() / 100
        out[f"{metric}_std"] = wide[("std", metric)].to_numpy() / 100 if ("std", metric) in wide else None
    out["main_metric"] = WEIGHTED_F1  # the paper reports weighted F1
    out["reported"] = True
    return out


def reported_table(protocol: str) -> pd.DataFrame:
    """Extractors x tasks, weighted F1 in percent as reported, for one protocol."""
    rows = paper_rows()
    rows = rows[rows["protocol"] == protocol]
    table = rows.pivot(index="extractor", columns="task", values=f"{WEIGHTED_F1}_mean") * 100
    table.columns.name = None
    return table.round(1)
