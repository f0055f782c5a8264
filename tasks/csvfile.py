"""The ``csv:<path>`` scheme: any labelled image list as a cell-classification task.

The CSV has a header with ``path`` and ``label`` and, optionally, ``patient``; other columns are ignored.
Paths are relative to the CSV's folder or absolute. Evaluation: 5-fold portable stratified CV
(:func:`tasks.splits.stratified_group_folds`, seed 0). Samples that share a patient, or that are
byte-identical, always share a fold (the groups are the connected sets over both keys); each group is
stratified on the label of its lexicographically first path. The sample paths (and so the folds) are relative
to the CSV's folder when every image lies under it, else to the images' common folder: copy the CSV together
with its images elsewhere and nothing changes. ``--split-file`` (``path,split``) replaces the folds by a fixed
split as for every cell task; ``--data-root`` does not apply (the CSV says where the images are).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from bench.core.errors import DataError, UsageError
from tasks.base import CellDataset, Inventory
from tasks.imagefolder import CellTask
from tasks.splits import merge_groups
from tasks.validation import finish_dataset

REQUIRED = ("path", "label")


@dataclass(frozen=True)
class CsvTask(CellTask):
    """A ``path,label[,patient]`` CSV of images."""

    csv_path: Path | None = None
    licence: str = "as given by the data's owner"
    layout: ClassVar[str] = "a CSV with header path,label[,patient]; paths relative to the CSV's folder or absolute"
    groups: ClassVar[str] = "patient and sha256 (shared fold)"

    @property
    def evaluation(self) -> str:
        return (f"portable stratified {self.n_folds}-fold CV (seed {self.split_seed}); samples of one patient and "
                "byte-identical files share a fold")

    def resolve_root(self, data_root=None, data_home: Path | None = None) -> Path:
        """The CSV file itself (the image root is decided when it is read)."""
        return self._csv

    @property
    def _csv(self) -> Path:
        if self.csv_path is None:
            raise UsageError("a CSV task needs the CSV file (csv:<path>)")
        return Path(self.csv_path)

    def _table(self) -> pd.DataFrame:
        csv_path = self._csv
        if not csv_path.is_file():
            raise DataError(f"task {self.name!r}: CSV file {csv_path} does not exist")
        try:
            table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"task {self.name!r}: {csv_path} is not a readable CSV ({exc})") from exc
        table.columns = [str(c).strip() for c in table.columns]
        missing = [c for c in REQUIRED if c not in table.columns]
        if missing:
            raise DataError(
                f"CSV {csv_path} lacks column(s) {missing} (it has {list(table.columns)}); expected a header "
                "'path,label' or 'path,label,patient', paths relative to the CSV's folder or absolute"
            )
        table["path"] = table["path"].str.strip()
        table["label"] = table["label"].str.strip()
        blank = table.index[(table["path"] == "") | (table["label"] == "")]
        if len(blank):
            raise DataError(f"CSV {csv_path}: {len(blank)} row(s) with an empty path or label, e.g. line(s) "
                            f"{[int(i) + 2 for i in blank[:5]]}")
        if table.empty:
            raise DataError(f"CSV {csv_path} lists no images")
        return table

    def inventory(self, root: Path | None = None) -> Inventory:
        """The CSV's rows as samples; files that do not exist go to ``missing_files`` (``load`` refuses them)."""
        csv_path = self._csv
        table = self._table()
        base = csv_path.parent.resolve()
        absolute = [Path(p) if Path(p).is_absolute() else base / p for p in table["path"]]
        absolute = [Path(os.path.normpath(p)) for p in absolute]
        exists = [p.is_file() for p in absolute]
        missing = [row for row, ok in zip(table["path"], exists) if not ok]
        present = [p for p, ok in zip(absolute, exists) if ok]
        if present and all(p.is_relative_to(base) for p in present):
            root = base
        elif present:
            root = Path(os.path.commonpath([str(p) for p in present]))
            root = root if root.is_dir() else root.parent
        else:
            root = base
        keep = table[exists]
        samples = pd.DataFrame({
            "path": [p.relative_to(root).as_posix() for p in present],
            "label": keep["label"].to_numpy(),
        })
        if "patient" in table.columns:
            samples["patient"] = keep["patient"].str.strip().to_numpy()
        repeated = samples["path"][samples["path"].duplicated()].unique().tolist()
        if repeated:
            raise DataError(f"CSV {csv_path} lists {len(repeated)} image(s) more than once, e.g. {repeated[:3]}")
        return Inventory(root, samples.sort_values("path", ignore_index=True), missing_files=missing)

    def load(self, data_root=None, *, data_home: Path | None = None, split_file=None) -> CellDataset:
        inv = self.inventory()
        if inv.missing_files:
            raise DataError(
                f"CSV {self.csv_path}: {len(inv.missing_files)} listed file(s) do not exist (paths are relative to "
                f"the CSV's folder {self._csv.parent.resolve()} unless absolute), e.g. {inv.missing_files[:3]}"
            )
        if "patient" in inv.samples.columns:
            shared = inv.samples.groupby("patient")["label"].nunique()
            mixed = shared[shared > 1].index.tolist()
            if mixed:
                inv.notes.append(f"{len(mixed)} patient(s) carry several labels (their samples share a fold): "
                                 f"{mixed[:10]}")
        return finish_dataset(self.name, inv, lambda samples: self.assign(samples, split_file))

    def group_keys(self, samples: pd.DataFrame):
        """Byte-identical files and samples of one patient share a fold (connected sets over both keys)."""
        if "patient" not in samples.columns:
            return super().group_keys(samples)
        return merge_groups(samples["sha256"].tolist(), samples["patient"].tolist())

    def settings(self) -> dict:
        return {**super().settings(), "csv": str(self.csv_path)}


def task_for(path: str) -> CsvTask:
    """The task for ``csv:<path>`` (resolved against the working directory)."""
    csv_path = Path(path).expanduser().resolve()
    return CsvTask(
        name=f"csv:{path}",
        summary=f"images listed in {csv_path}",
        data_dir="",
        obtain="Check the path after 'csv:' (a CSV with header path,label[,patient]).",
        fixed_root=csv_path.parent,
        csv_path=csv_path,
    )
