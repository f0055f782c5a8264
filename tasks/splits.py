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

from bench.core.errors import SplitError


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
    keys = paths.map(lambda p: path_key(p, seed))  # pyright: ignore[reportArgumentType]  # (str: astype(str) above)
    start = 0
    for label in sorted(labels.unique()):
        members = np.flatnonzero((labels == label).to_numpy())
        order = members[np.argsort(keys.iloc[members].to_numpy(), kind="stable")]
        folds[order] = (start + np.arange(len(order))) % n_folds
        start = (start + len(order)) % n_folds
    return folds


def authors_folds(paths, labels, n_folds: int = 5) -> np.ndarray:
    """Test-fold number of every sample, aligned with ``paths``, the DinoBloom authors' way: scikit-learn's
    ``StratifiedKFold(n_folds)`` without shuffling over the samples in file order. Their order was their file
    system's listing, which nobody can rebuild; here it is the sorted relative paths, so the same files give the
    same folds everywhere. Byte-identical files are not grouped (theirs were not): a duplicate pair can straddle
    train and test."""
    from sklearn.model_selection import StratifiedKFold

    paths = pd.Series(paths).reset_index(drop=True).astype(str)
    labels = pd.Series(labels).reset_index(drop=True).astype(str).to_numpy()
    if paths.duplicated().any():
        raise SplitError(f"duplicate paths in split request: {paths[paths.duplicated()].head(3).tolist()}")
    counts = pd.Series(labels).value_counts()
    if (counts < n_folds).any():
        raise SplitError(f"the authors' {n_folds}-fold CV needs at least {n_folds} samples per class; "
                         f"{counts[counts < n_folds].to_dict()} have fewer (use the portable folds)")
    order = np.argsort(paths.to_numpy(), kind="stable")
    folds = np.empty(len(paths), dtype=np.int64)
    for fold, (_, test) in enumerate(StratifiedKFold(n_splits=n_folds).split(np.zeros(len(order)), labels[order])):
        folds[order[test]] = fold
    return folds


def patient_splits(bag_ids, bag_labels, n_folds: int, seeds) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Repeated patient-level stratified k-fold CV: for each seed, the bags (patients) are dealt to folds by
    :func:`stratified_folds` on their ids; (seed, fold, training bags, test bags) per non-empty test fold."""
    out = []
    for seed in seeds:
        folds = stratified_folds(pd.Series(bag_ids), pd.Series(bag_labels), n_folds, seed)
        for fold in range(n_folds):
            test = np.flatnonzero(folds == fold)
            if len(test):
                out.append((int(seed), fold, np.flatnonzero(folds != fold), test))
    return out


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
    repeated = table[table["path"].duplicated(keep=False)]
    if len(repeated):  # one image in train and test would score a cell the probe was trained on
        path = repeated["path"].iat[0]
        where = " and ".join(sorted(set(repeated.loc[repeated["path"] == path, "split"])))
        more = repeated["path"].nunique() - 1
        raise SplitError(f"split file {csv_path}: {path} is listed {int((repeated['path'] == path).sum())} times "
                         f"({where})" + (f", and {more} more path(s) are listed more than once" if more else "")
                         + "; list every image once, in train or in test")
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


SPLITS_DIR = Path(__file__).resolve().parent / "data"  # the pinned canonical splits shipped with hemabench


def read_canonical_split(file_name: str, sha256: str | None) -> pd.DataFrame:
    """A shipped canonical split (``tasks/data/<file_name>``: path, label, fold), every value as text, refused
    unless its rows give the pinned digest ``sha256`` (the formula of ``CellDataset.split_fingerprint``)."""
    from bench.core.files import split_digest

    path = SPLITS_DIR / file_name
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SplitError(f"the canonical split {path} shipped with hemabench cannot be read ({exc}); reinstall "
                         "hemabench") from exc
    if list(table.columns) != ["path", "label", "fold"] or split_digest(table["path"], table["label"],
                                                                         table["fold"]) != sha256:
        raise SplitError(f"the canonical split {path} shipped with hemabench does not give its pinned digest "
                         f"{sha256}; reinstall hemabench")
    return table


def split_differences(samples: pd.DataFrame, canonical: pd.DataFrame, limit: int = 10) -> list[str]:
    """How a copy's split (``samples``: path, label, fold) differs from the canonical one (path, label, fold), file
    by file, one line per kind of difference, naming up to ``limit`` paths of each: canonical files this copy lacks,
    files it has that the canonical split does not, files under another label, and files in another fold. Where
    files are missing or added, the folds are dealt anew over what is here, so the fold line only counts."""
    from tasks.validation import listed

    here = dict(zip(samples["path"].astype(str), zip(samples["label"].astype(str), samples["fold"].astype(str))))
    there = dict(zip(canonical["path"].astype(str), zip(canonical["label"].astype(str),
                                                         canonical["fold"].astype(str))))
    absent = sorted(set(there) - set(here))
    extra = sorted(set(here) - set(there))
    shared = sorted(set(here) & set(there))
    relabelled = [p for p in shared if here[p][0] != there[p][0]]
    refolded = [p for p in shared if here[p][1] != there[p][1]]
    lines = []
    if absent:
        lines.append(f"{len(absent):,} of its {len(there):,} files are not in this copy: {listed(absent, limit)}")
    if extra:
        lines.append(f"{len(extra):,} file(s) here are not in it: {listed(extra, limit)}")
    if relabelled:
        lines.append(f"{len(relabelled):,} file(s) carry another label here: " + listed(
            [f"{p} ({here[p][0]} here, {there[p][0]} in the canonical split)" for p in relabelled], limit))
    if refolded and (absent or extra):
        lines.append(f"{len(refolded):,} of the {len(shared):,} shared files fall in another fold, as the folds are "
                     "dealt over the files present")
    elif refolded:
        lines.append(f"the same files and labels, but {len(refolded):,} file(s) in another fold (another fold "
                     f"scheme or seed?): {listed(refolded, limit)}")
    return lines


def write_split_csv(samples: pd.DataFrame, out: str | Path) -> Path:
    """Export ``path,label,fold`` (the committed, portable form of a split)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples[["path", "label", "fold"]].to_csv(out, index=False)
    return out


# ----------------------------------------------------------------------------------------------
# Grouped folds and per-class fixed splits
# ----------------------------------------------------------------------------------------------
def merge_groups(*keys) -> np.ndarray:
    """Connected components over samples that share any key: ``merge_groups(sha256, patient)`` puts two
    samples together when they have the same content OR the same patient (transitively). Each argument is a
    sequence aligned with the samples; missing values (None/NaN/"") link nothing. Returns int group ids
    (numbered by first appearance; the ids carry no meaning, only the partition does)."""
    n = len(keys[0]) if keys else 0
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in keys:
        if len(column) != n:
            raise SplitError(f"group keys have different lengths ({len(column)} vs {n})")
        first: dict = {}
        for i, value in enumerate(column):
            if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
                continue
            j = first.setdefault(value, i)
            if j != i:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)


def stratified_group_folds(paths, labels, groups, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Test-fold number (0..n_folds-1) of every sample, aligned with ``paths``; all samples of a group (byte-
    identical duplicates, a patient) share one fold.

    Portable: the result depends only on the relative paths, the labels, the partition into groups and the
    seed, never on the input order or on the group ids' spelling. A group is represented by its
    lexicographically first member path and stratified on that member's label (so a cross-class duplicate
    pair counts towards the class of its first path). Within each class the groups are dealt largest first,
    then in ``sha256(seed, representative path)`` order, each to the fold holding the fewest samples of that
    class (ties: fewest samples overall, then the lowest fold number). Without multi-member groups this is
    exactly :func:`stratified_folds`: fold sizes then differ by at most one, per class and overall.
    """
    if n_folds < 2:
        raise SplitError(f"n_folds must be at least 2, got {n_folds}")
    paths = pd.Series(paths).reset_index(drop=True).astype(str)
    labels = pd.Series(labels).reset_index(drop=True).astype(str)
    groups = pd.Series(groups).reset_index(drop=True)
    if not (len(paths) == len(labels) == len(groups)):
        raise SplitError(f"paths, labels and groups differ in length ({len(paths)}, {len(labels)}, {len(groups)})")
    if paths.duplicated().any():
        raise SplitError(f"duplicate paths in split request: {paths[paths.duplicated()].head(3).tolist()}")
    if groups.isna().any():
        raise SplitError("group ids must not be missing; give every sample its own group if it has none")
    members = pd.Series(np.arange(len(paths))).groupby(groups.to_numpy()).apply(list).tolist()
    units = []  # (label, -size, key, member rows)
    for rows in members:
        # (pandas-stubs types a cell as any scalar; these are str)
        first = min(rows, key=lambda i: paths.iat[i])  # pyright: ignore[reportCallIssue, reportArgumentType]
        units.append((labels.iat[first], -len(rows), path_key(paths.iat[first], seed), rows))  # pyright: ignore[reportArgumentType]
    units.sort(key=lambda u: (u[0], u[1], u[2]))
    folds = np.empty(len(paths), dtype=np.int64)
    totals = np.zeros(n_folds, dtype=np.int64)
    per_class: dict[str, np.ndarray] = {}
    for label, neg_size, _, rows in units:
        counts = per_class.setdefault(label, np.zeros(n_folds, dtype=np.int64))
        fold = min(range(n_folds), key=lambda f: (counts[f], totals[f], f))
        folds[rows] = fold
        counts[fold] -= neg_size
        totals[fold] -= neg_size
    return folds


def n_test_per_class(n: int, test_fraction: float = 0.2) -> int:
    """floor(test_fraction x n) in exact arithmetic (0.2 x 5 is 1, not 0.9999...)."""
    from fractions import Fraction

    fraction = Fraction(str(test_fraction))
    if not 0 < fraction < 1:
        raise SplitError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    return int(n * fraction.numerator // fraction.denominator)


def fixed_class_split(paths, labels, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """"train"/"test" for every sample, aligned with ``paths``: per class, floor(test_fraction x class count)
    samples go to test, the first ones in ``sha256(seed, path)`` order. Portable (input order and the data
    set's location change nothing) and testable on plain path lists."""
    paths = pd.Series(paths).reset_index(drop=True).astype(str)
    labels = pd.Series(labels).reset_index(drop=True).astype(str)
    if len(paths) != len(labels):
        raise SplitError(f"paths and labels differ in length ({len(paths)}, {len(labels)})")
    if paths.duplicated().any():
        raise SplitError(f"duplicate paths in split request: {paths[paths.duplicated()].head(3).tolist()}")
    keys = np.array([path_key(p, seed) for p in paths], dtype=object)
    out = np.full(len(paths), "train", dtype=object)
    label_values = labels.to_numpy()
    for label in sorted(set(label_values)):
        members = np.flatnonzero(label_values == label)
        order = members[np.argsort(keys[members], kind="stable")]
        out[order[: n_test_per_class(len(order), test_fraction)]] = "test"
    return out
