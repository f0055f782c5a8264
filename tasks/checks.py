"""``bench data check`` and ``bench data info``: what is in a task's folder, what is wrong with it, and where
the data comes from.

* :func:`check_dataset` -> :class:`DataReport`: class counts, empty classes, byte-identical duplicates (pairs,
  and the ones that cross classes), files named like images that are not images (no image signature), images
  that cannot be decoded (``verify``: the whole file, by the rule of ``bench.core.images.decode_rgb``), and
  every other file under the root that is not used, with the reason. It reads the folder through the task's own
  ``inventory``; it never writes, never generates data and never raises for a defect (only for a data folder
  that does not exist). A task of points on whole images (:class:`tasks.points.PointInventory`: Chula-RBC-12)
  is reported by its points: counts per class, its images (duplicates, unreadable, without labels) and the defects
  of its labels files by file and line; the crops a run would cut are not made.
* :func:`describe_task` -> str: the task's card (where to obtain the data, licence, citation, layout,
  classes, evaluation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.core.errors import BadImageError, DataError
from bench.core.images import to_rgb
from tasks.base import Task
from tasks.harmonised import describe_map
from tasks.points import PointInventory
from tasks.validation import duplicate_groups, folder_hint, hash_and_sniff, is_defect, listed


@dataclass
class DataReport:
    """The result of :func:`check_dataset`. Paths are relative to ``root``."""

    task: str
    root: str
    n_images: int  # files that are images (by signature), per class in class_counts; points for a point task
    class_counts: dict[str, int]
    empty_classes: list[str] = field(default_factory=list)
    missing_classes: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    cross_class_duplicates: list[list[str]] = field(default_factory=list)  # "path [label]" entries
    non_images: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: error"
    ignored_files: dict[str, str] = field(default_factory=dict)  # path (folders end in "/") -> why it is not used
    left_out: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deeper: str | None = None  # a did-you-mean: the folder one level deeper that looks like the data set
    unit: str = "images"  # what n_images counts: "points" for a task of points on whole images
    defects: dict[str, list[str]] = field(default_factory=dict)  # a point task's, by kind: "file:line: ..." each

    @property
    def duplicate_pairs(self) -> list[tuple[str, str]]:
        return [(g[i], g[j]) for g in self.duplicate_groups for i in range(len(g)) for j in range(i + 1, len(g))]

    def problems(self) -> list[str]:
        """One line per kind of defect that makes the data set differ from a clean copy."""
        out = []
        if len(self.class_counts) < 2:
            shown = f" ({', '.join(self.class_counts)})" if self.class_counts else ""
            out.append(f"{len(self.class_counts)} class(es) with images{shown}: classification needs at least 2")
        if self.missing_files:
            out.append(f"{len(self.missing_files)} listed file(s) do not exist: {listed(self.missing_files, 5)}")
        if self.unexpected:
            out.append(f"folder(s) outside the expected layout: {listed(self.unexpected, 10)}")
        if self.empty_classes:
            out.append(f"class folder(s) without images: {', '.join(self.empty_classes)}")
        if self.missing_classes:
            out.append(f"expected class(es) absent: {', '.join(self.missing_classes)}")
        out += [f"{len(entries)} {kind}: {listed(entries, 5)}" for kind, entries in self.defects.items()]
        if self.non_images:
            out.append(f"{len(self.non_images)} file(s) named like images are not images: {listed(self.non_images, 5)}")
        if self.unreadable:
            out.append(f"{len(self.unreadable)} image(s) cannot be read: {listed(self.unreadable, 5)}")
        broken = [f"{p} ({r})" for p, r in self.ignored_files.items() if is_defect(r)]
        if broken:
            out.append(f"{len(broken)} broken symlink(s), symlink loop(s) or unreadable entries: {listed(broken, 5)}")
        if self.duplicate_groups:
            out.append(
                f"{len(self.duplicate_pairs)} pair(s) of byte-identical images in {len(self.duplicate_groups)} set(s)"
                f", {len(self.cross_class_duplicates)} set(s) across classes"
            )
        if self.deeper:  # last: the fix for the problems above
            out.append(self.deeper)
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict:
        info = asdict(self)
        info["duplicate_pairs"] = [list(p) for p in self.duplicate_pairs]
        info["problems"] = self.problems()
        info["ok"] = self.ok
        return info

    def format(self) -> str:
        lines = [f"task {self.task}: {self.root}", f"{self.n_images} {self.unit} in {len(self.class_counts)} classes"]
        width = max((len(c) for c in self.class_counts), default=0)
        lines += [f"  {c:<{width}}  {n:>7}" for c, n in self.class_counts.items()]
        lines += [f"note: {n}" for n in self.notes]
        if self.ignored_files:
            lines.append(f"not used: {len(self.ignored_files)} file(s) or folder(s)")
            by_reason: dict[str, list[str]] = {}
            for path, reason in self.ignored_files.items():
                by_reason.setdefault(reason, []).append(path)
            lines += [f"  {reason} ({len(paths)}): {listed(paths, 10)}" for reason, paths in sorted(by_reason.items())]
        if self.left_out:
            lines.append(f"left out by the task ({len(self.left_out)}): {listed(self.left_out, 10)}")
        for group in self.cross_class_duplicates:
            lines.append(f"cross-class duplicate: {' = '.join(group)}")
        for kind, entries in self.defects.items():
            lines.append(f"{kind} ({len(entries)}): {listed(entries)}")
        problems = self.problems()
        lines += [f"problem: {p}" for p in problems] or ["no problems found"]
        return "\n".join(lines)


def check_dataset(task: Task, data_root=None, data_home: Path | None = None, *, verify: bool = True) -> DataReport:
    """Inspect the task's data folder and report, without changing or generating anything.

    ``verify``: decode every image completely, as a run does (:func:`bench.core.images.decode_rgb`'s rule), so a
    truncated file or a refused mode is reported here (PIL's ``verify()`` checks the structure only and passes
    a truncated JPEG). Raises :class:`~tasks.base.DataError` only when the data folder does not exist (with the
    task's ``obtain`` text).
    """
    root = Path(task.resolve_root(data_root, Path(data_home) if data_home is not None else Path.cwd()))
    if not root.exists():
        raise DataError(f"task {task.name!r}: data folder {root} does not exist. {task.obtain}".strip())
    inv = task.inventory(root)
    if isinstance(inv, PointInventory):
        return _point_report(task, inv, verify)
    samples = inv.samples.reset_index(drop=True).copy()
    present = np.array([(inv.root / p).is_file() for p in samples["path"]], dtype=bool)  # (a list [] selects columns)
    samples = samples[present].reset_index(drop=True)
    facts = [hash_and_sniff(inv.root / p) for p in samples["path"]]
    samples["sha256"] = [sha for sha, _ in facts]
    non_images = [p for p, (_, fmt) in zip(samples["path"], facts) if fmt is None]
    unreadable = _undecodable(inv.root, [p for p, (_, fmt) in zip(samples["path"], facts) if fmt is not None]) \
        if verify else []
    groups = duplicate_groups(samples)
    paths, labels = samples["path"], samples["label"]
    left_out = set(inv.left_out)
    counts = samples.loc[~samples["path"].isin(non_images), "label"].value_counts()
    deeper = folder_hint(task, inv.root) if len(counts) < 2 or inv.unexpected else None
    return DataReport(
        task=task.name,
        root=str(inv.root),
        n_images=int(counts.sum()),
        class_counts={str(k): int(counts.get(k, 0)) for k in sorted(counts.index)},
        empty_classes=list(inv.empty_classes),
        missing_classes=list(inv.missing_classes),
        unexpected=list(inv.unexpected),
        duplicate_groups=[paths.iloc[g].tolist() for g in groups],
        cross_class_duplicates=[
            [f"{paths.iat[i]} [{labels.iat[i]}]" for i in g] for g in groups if labels.iloc[g].nunique() > 1
        ],
        non_images=non_images,
        unreadable=unreadable,
        ignored_files={p: r for p, r in inv.not_used().items() if p not in left_out},
        left_out=list(inv.left_out),
        missing_files=list(inv.missing_files),
        notes=list(inv.notes),
        deeper=deeper,
    )


def _undecodable(root: Path, paths) -> list[str]:
    """"path: error" for every image that does not decode completely, as a run decodes it (a mode or range the
    decoding rule refuses included)."""
    from PIL import Image

    out = []
    for path in paths:
        try:
            with Image.open(root / path) as image:
                image.load()  # the whole file, as a run decodes it
                to_rgb(image, path)
        except BadImageError as exc:  # a mode or range the decoding rule refuses
            out.append(f"{path}: {exc}")
        except Exception as exc:  # PIL raises many types for broken files
            out.append(f"{path}: {type(exc).__name__}: {exc}")
    return out


def _point_report(task: Task, inv: PointInventory, verify: bool) -> DataReport:
    """A point task's report: its points per class, its images and the defects of its labels files."""
    counts = inv.samples["label"].value_counts()
    header = {entry.split(": ", 1)[0] for entry in inv.unreadable}  # reported already
    return DataReport(
        task=task.name,
        root=str(inv.root),
        n_images=int(counts.sum()),
        unit="points",
        class_counts={str(k): int(counts[k]) for k in sorted(counts.index)},
        missing_classes=list(inv.missing_classes),
        duplicate_groups=[list(group) for group in inv.identical_images],
        non_images=list(inv.non_images),
        unreadable=list(inv.unreadable) + (_undecodable(inv.root, [p for p in inv.images if p not in header])
                                           if verify else []),
        ignored_files=inv.not_used(),
        missing_files=list(inv.missing_files),
        notes=list(inv.notes),
        defects=inv.defects(),
    )


def describe_task(task: Task, data_home: Path | None = None) -> str:
    """Where to obtain the task's data, its licence and citation, the expected layout and the evaluation."""
    card = task.card
    lines = [f"{card.name}: {card.summary}",
             f"kind: {card.kind}; protocols: {', '.join(card.protocols)}; main metric: {card.main_metric}",
             f"evaluation: {card.evaluation}"]
    lines += [f"{label}: {value}" for label, value in (("licence", card.licence), ("citation", card.citation)) if value]
    lines += [f"obtain: {card.obtain}", f"expected layout: {card.layout}"]
    if card.classes:
        lines.append(f"classes ({len(card.classes)}): {', '.join(card.classes)}")
    harmonised = describe_map(card.name)
    if harmonised:
        lines.append(harmonised)
    if task.fixed_root is not None:
        lines.append(f"data: {task.fixed_root}")
    elif task.data_dir:
        where = Path(data_home) / task.data_dir if data_home is not None else f"$BENCH_HOME/data/{task.data_dir}"
        lines.append(f"default location: {where} (or pass --data-root)")
    return "\n".join(lines)
