"""Portable splits: fold assignment is a function of each sample's relative path, its class and a seed.

The DinoBloom authors' folds depended on the file-system listing order, so nobody else could rebuild them.
Here, within each class the samples are ordered by ``sha256(seed, relative path)`` and dealt to the folds
round-robin; each class starts dealing where the previous class stopped, so fold sizes differ by at most
one overall and per class. Listing order and the folder the data set lives in change nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd


class SplitError(ValueError):
    """A split file or split request that does not fit the data set."""


def path_key(relative_path: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{relative_path}".encode()).hexdigest()


def stratified_folds(paths: pd.Series, labels: pd.Series, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Test-fold number (0..n_folds-1) of every sample, aligned with ``paths``.

    ``groups`` are not handled here: samples that must stay together (duplicates, patients) are grouped by
    the caller, which passes one representative path per group.
    """
    if n_folds < 2:
        raise SplitError(f"n_folds must be at least 2, got {n_folds}")
    paths = pd.Series(paths).reset_index(drop=True).astype(str)
    labels = pd.Series(labels).reset_index(drop=True).astype(str)
    if paths.duplicated().any():
        raise SplitError(f"duplicate paths in split request: {paths[paths.duplicated()].head(3).tolist()}")
    folds = np.empty(len(paths), dtype=np.int64)
    keys = paths.map(lambda p: path_key(p, seed))
    start = 0
    for label in sorted(labels.unique()):
        members = np.flatnonzero((labels == label).to_numpy())
        order = members[np.argsort(keys.iloc[members].to_numpy(), kind="stable")]
        folds[order] = (start + np.arange(len(order))) % n_folds
        start = (start + len(order)) % n_folds
    return folds


def read_fixed_split(csv_path: str | Path, known_paths: pd.Series) -> pd.Series:
    """Read ``path,split`` (split in {train, test}) and align it to ``known_paths`` (relative POSIX paths)."""
    csv_path = Path(csv_path)
    table = pd.read_csv(csv_path, dtype=str)
    missing_cols = {"path", "split"} - set(table.columns)
    if missing_cols:
        raise SplitError(f"split file {csv_path} lacks column(s) {sorted(missing_cols)}; expected header 'path,split'")
    bad = sorted(set(table["split"]) - {"train", "test"})
    if bad:
        raise SplitError(f"split file {csv_path}: split values must be 'train' or 'test', found {bad[:5]}")
    mapping = dict(zip(table["path"], table["split"]))
    known = pd.Series(known_paths).astype(str)
    unknown = sorted(set(mapping) - set(known))
    absent = known[~known.isin(mapping.keys())]
    if unknown or len(absent):
        raise SplitError(
            f"split file {csv_path} does not match the data set: {len(unknown)} path(s) in the file are not in "
            f"the data set (e.g. {unknown[:3]}), {len(absent)} data-set path(s) are not in the file "
            f"(e.g. {absent.head(3).tolist()})"
        )
    return known.map(mapping)


def write_split_csv(samples: pd.DataFrame, out: str | Path) -> Path:
    """Export ``path,label,fold`` (the committed, portable form of a split)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples[["path", "label", "fold"]].to_csv(out, index=False)
    return out
