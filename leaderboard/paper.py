"""The DinoBloom paper's reported numbers (Tables 2 and 3), shown beside measured rows, never ranked with them.

Source: Koch, V., Wagner, S. J., Kazeminia, S., Sancar, E., Hehr, M., Schnabel, J. A., Peng, T., Marr, C.:
"DinoBloom: A Foundation Model for Generalizable Cell Embeddings in Hematology", MICCAI 2024 (arXiv:2404.05022),
Tables 2 (Acevedo, BMC: kNN-1, kNN-20, linear probe) and 3 (AML Hehr: ABMIL). Values in percent as printed;
``data/dinobloom_paper_results.csv`` holds them with our protocol names (knn1 -> knn-1, knn20 -> knn-20,
abmil -> abmil-paper).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.metrics import WEIGHTED_F1

PAPER_CSV = Path(__file__).resolve().parent / "data" / "dinobloom_paper_results.csv"
CITATION = "Koch et al., DinoBloom, MICCAI 2024, Tables 2-3"


def paper_rows() -> pd.DataFrame:
    """extractor, task, protocol, <metric>_mean / _std as fractions (like measured results), reported=True."""
    table = pd.read_csv(PAPER_CSV)
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
