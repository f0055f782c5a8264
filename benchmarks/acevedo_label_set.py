"""Which Acevedo did the DinoBloom paper score: the 8 folder classes (``acevedo``) or the 11 file-name-prefix
classes (``acevedo-11``)? (issue 27). Measured on real images: the same features evaluated on both label sets, and
the gap between weighted F1 and balanced accuracy beside the gaps of the paper's Table 2.

    BENCH_HOME=... python benchmarks/acevedo_label_set.py --data complete=PBC_dataset_normal_DIB \\
        [--data subset=../shared/data/pbc/labeled] [--extractors color-histogram,resnet50-trunc-random,...]
        [--protocols knn-1,knn-20,linear,linear-std] [--out report.md]

Each ``--data NAME=DIR`` is a copy of the Acevedo layout. Per extractor, the features of the copy are extracted
once through the harness (``bench.runner.load_pair`` on ``acevedo``: the authors' preprocessing, the feature
cache) and every protocol runs on them twice: over ``acevedo``'s canonical folds and labels, and over
``acevedo-11``'s (the same features, the rows of its images). Reported per (copy, extractor, protocol): weighted F1
and balanced accuracy (means over the five folds) and their difference, the gap. On a copy with other class
proportions than the complete set (the 500-per-class subset), the weighted F1 is also given re-weighted to the
complete set's class counts (each test cell weighted by complete count / copy count of its class: what the same
per-class confusions would give at the complete set's proportions; balanced accuracy does not change under such
weights). It re-weights the test cells only: a probe trained on balanced classes makes other confusions than one
trained at the complete set's proportions, which is why the subset cannot settle the question (docs/tasks.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import emit_report, log, machine_info  # noqa: E402

from bench.core.settings import use_scipy_array_api  # noqa: E402

use_scipy_array_api()  # before anything imports scipy: the linear probe's GPU path needs it

TASKS = ("acevedo", "acevedo-11")
N_CLASSES = {"acevedo": 8, "acevedo-11": 11}


def reweighted_f1(labels, predictions, folds, full_counts: dict[str, int]) -> float:
    """Weighted F1 per fold with each cell weighted by complete-set count / this copy's count of its class, mean
    over folds."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import f1_score

    labels, predictions, folds = (np.asarray(x) for x in (labels, predictions, folds))
    here = pd.Series(labels).value_counts()
    weight = np.array([full_counts[c] / here[c] for c in labels])
    return float(np.mean([f1_score(labels[folds == f], predictions[folds == f], average="weighted",
                                   sample_weight=weight[folds == f]) for f in np.unique(folds)]))


def measure(extractor: str, root: Path, protocols: list[str], full_counts: dict) -> list[dict]:
    """One row per (protocol, task) for one extractor on one copy."""
    import numpy as np

    from bench.core import settings
    from bench.runner import RunOptions, load_pair
    from protocols import get_protocol
    from tasks import get_task

    started = time.perf_counter()
    pair = load_pair(extractor, "acevedo", RunOptions(progress=False, data_root=root), log=lambda m: None)
    log(f"{extractor}: features of {len(pair.dataset):,} images in {time.perf_counter() - started:.0f} s")
    row_of = {p: i for i, p in enumerate(pair.dataset.samples["path"])}
    rows = []
    for task_name in TASKS:
        dataset = pair.dataset if task_name == "acevedo" else get_task(task_name).load(
            root, data_home=settings.data_dir())
        index = np.array([row_of[p] for p in dataset.samples["path"]])
        features, keep = pair.features[index], pair.keep[index]
        design = dataset.design(keep, dataset.classes)
        for name in protocols:
            started = time.perf_counter()
            evaluation = get_protocol(name).evaluate(features, design)
            scores = {m: 100 * evaluation.mean[m] for m in ("weighted_f1", "balanced_accuracy")}
            predicted, classes = evaluation.predictions, np.asarray(design.classes)  # label indices -> names
            labels, guesses = classes[predicted["label"].to_numpy()], classes[predicted["prediction"].to_numpy()]
            rows.append({"extractor": extractor, "protocol": name, "task": task_name, "images": len(dataset),
                         "wf1": scores["weighted_f1"], "bacc": scores["balanced_accuracy"],
                         "wf1_full": 100 * reweighted_f1(labels, guesses, predicted["fold"].astype(str).to_numpy(),
                                                         full_counts[task_name])})
            log(f"{extractor} / {task_name} / {name}: weighted F1 {scores['weighted_f1']:.1f}, balanced accuracy "
                f"{scores['balanced_accuracy']:.1f} ({time.perf_counter() - started:.0f} s)")
    return rows


def paper_gaps() -> dict:
    """The paper's Acevedo rows: (extractor, protocol) -> (weighted F1, balanced accuracy) in percent."""
    import pandas as pd

    from leaderboard.paper import PAPER_CSV

    table = pd.read_csv(PAPER_CSV)
    table = table[table["task"] == "acevedo"].pivot_table(index=["extractor", "protocol"], columns="metric",
                                                          values="value")
    return {key: (r["weighted_f1"], r["balanced_accuracy"]) for key, r in table.iterrows()}


def report(tables: dict, paper: dict, machine: str) -> list[str]:
    gaps = sorted(w - b for w, b in paper.values())
    strong = sorted(w - b for w, b in paper.values() if w >= 85)
    lines = ["# Which Acevedo the paper scored: the gap between weighted F1 and balanced accuracy", "",
             f"Machine: {machine}. `benchmarks/acevedo_label_set.py`; percent, means over the canonical 5 folds.", "",
             f"The paper's Table 2, Acevedo: {len(paper)} rows ({len({e for e, _ in paper})} models x kNN-1, kNN-20, "
             f"linear), weighted F1 {min(w for w, _ in paper.values()):.1f}-{max(w for w, _ in paper.values()):.1f}, "
             f"gap {gaps[0]:.1f} to {gaps[-1]:.1f} (median {gaps[len(gaps) // 2]:.1f}); the {len(strong)} rows at "
             f"85 weighted F1 or more: gap {strong[0]:.1f} to {strong[-1]:.1f}.", ""]
    for name, table in tables.items():
        counts = table.groupby("task")["images"].first()
        lines += [f"## {name}: {', '.join(f'{t} {n:,} images' for t, n in counts.items())}", "",
                  "| extractor | protocol | 8 classes wF1 / bAcc | gap | gap at complete proportions | "
                  "11 classes wF1 / bAcc | gap | gap at complete proportions |", "|---|---|---|---|---|---|---|---|"]
        wide = table.set_index(["extractor", "protocol", "task"])
        for (extractor, protocol), _ in table.groupby(["extractor", "protocol"], sort=False):
            cells = []
            for task in TASKS:
                r = wide.loc[(extractor, protocol, task)]
                if r.bacc <= 100 / N_CLASSES[task] + 1:  # predictions collapsed to (about) one class: no data point
                    cells += [f"{r.wf1:.1f} / {r.bacc:.1f} (collapsed)", "—", "—"]
                    continue
                cells += [f"{r.wf1:.1f} / {r.bacc:.1f}", f"{r.wf1 - r.bacc:.1f}", f"{r.wf1_full - r.bacc:.1f}"]
            lines.append(f"| {extractor} | {protocol} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main() -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, metavar="NAME=DIR",
                        help="a copy of the Acevedo layout (repeatable)")
    parser.add_argument("--extractors", default="color-histogram,resnet50-trunc-random,vit-s14-random")
    parser.add_argument("--protocols", default="knn-1,knn-20,linear,linear-std")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from tasks import get_task

    full_counts = {t: get_task(t).canonical_split()["label"].value_counts().to_dict() for t in TASKS}
    tables = {}
    for item in args.data:
        name, _, root = item.partition("=")
        rows = []
        for extractor in args.extractors.split(","):
            rows += measure(extractor, Path(root).resolve(), args.protocols.split(","), full_counts)
            tables[name] = pd.DataFrame(rows)
            emit_report(report(tables, paper_gaps(), "(partial)"), args.out)  # what is measured so far
            if args.out:
                pd.concat(tables, names=["copy"]).to_csv(args.out.with_suffix(".csv"))  # the numbers, for re-rendering
    info = machine_info()
    machine = f"{info['cpu']}, {info['cpus_usable']} usable CPUs, torch {info['torch']}"
    return emit_report(report(tables, paper_gaps(), machine), args.out)


if __name__ == "__main__":
    sys.exit(main())
