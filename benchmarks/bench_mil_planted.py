"""ABMIL on an easy planted signal in real cells (issue 11): balanced accuracy of ``abmil-gated`` and
``abmil-paper`` on ``color-histogram`` features, with and without the protocol's feature standardisation, at
several feature scales, against mean-pooled features + StandardScaler + LogisticRegression on the same folds.

    python benchmarks/bench_mil_planted.py [--scales 1,100] [--standardize both|on|off] [--seeds 0,1,2]
                                           [--heads abmil-gated,abmil-paper] [--pbc PATH] [--out report.md]

The layout (the AML manifest's, built in memory): 40 patients, 5 labels, 8 patients per label; a patient of
label L holds 10 cells of PBC class T_L (basophil, eosinophil, erythroblast, ig, lymphocyte; drawn without
replacement, no cell in two patients) and the same 20 filler cells (drawn once from monocyte, neutrophil and
platelet, shared by every patient). Features: the registered ``color-histogram`` entry with its own transform
(what ``bench run`` computes; through the harness with a ``patient,label,path`` manifest of this layout the
numbers are identical). Folds: ``tasks.splits.patient_splits`` over the patient ids, 5 folds per seed, as the
``aml-hehr`` task makes them. Every protocol setting other than ``standardize`` is the registered default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
PBC_DEFAULT = REPO_ROOT.parent / "shared" / "data" / "pbc" / "labeled"
MARKER_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte")  # T_L for labels 0..4
FILLER_CLASSES = ("monocyte", "neutrophil", "platelet")


def planted_layout(pbc: Path, per_label: int = 8, n_markers: int = 10, n_filler: int = 20, seed: int = 0):
    """[(patient, label, image path)] in the layout above; deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    files = {c: sorted((pbc / c).glob("*.jpg")) for c in MARKER_CLASSES + FILLER_CLASSES}
    pool = [p for c in FILLER_CLASSES for p in files[c]]
    filler = [pool[i] for i in rng.choice(len(pool), n_filler, replace=False)]
    rows = []
    for label, cell_type in enumerate(MARKER_CLASSES):
        picks = rng.choice(len(files[cell_type]), per_label * n_markers, replace=False)
        for j in range(per_label):
            patient = f"patient{label}{j:02d}"
            rows += [(patient, label, files[cell_type][k]) for k in picks[j * n_markers:(j + 1) * n_markers]]
            rows += [(patient, label, path) for path in filler]
    return rows


def color_histograms(paths: list[Path]) -> np.ndarray:
    """The ``color-histogram`` features of ``paths`` (each distinct image computed once), float32."""
    import torch
    from PIL import Image

    from extractors import get_extractor

    entry = get_extractor("color-histogram")
    model, transform = entry.build().eval(), entry.transform()
    distinct = sorted(set(paths))
    found = {}
    with torch.inference_mode():
        for i in range(0, len(distinct), 64):
            chunk = distinct[i:i + 64]
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in chunk])
            found.update(zip(chunk, model(batch).numpy()))
    return np.stack([found[p] for p in paths]).astype(np.float32)


def planted_design(rows, seeds):
    """(BagDesign, bag row indices) of a layout from :func:`planted_layout`."""
    from bench.core.design import BagDesign
    from tasks.splits import patient_splits

    patients = sorted({r[0] for r in rows})
    position = {p: i for i, p in enumerate(patients)}
    bag_rows = [[] for _ in patients]
    labels = np.zeros(len(patients), dtype=np.int64)
    for row, (patient, label, _) in enumerate(rows):
        bag_rows[position[patient]].append(row)
        labels[position[patient]] = label
    bag_rows = [np.asarray(r) for r in bag_rows]
    return BagDesign(list(MARKER_CLASSES), patients, labels, bag_rows, patient_splits(patients, labels, 5, seeds))


def reference(features: np.ndarray, design) -> tuple[float, float]:
    """Mean-pooled bag features, StandardScaler + LogisticRegression (defaults) per split: balanced accuracy
    (mean, std over the splits)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pooled = np.stack([features[r].mean(axis=0) for r in design.bag_rows])
    scores = []
    for _, _, train, test in design.splits:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        model.fit(pooled[train], design.bag_labels[train])
        scores.append(balanced_accuracy_score(design.bag_labels[test], model.predict(pooled[test])))
    return float(np.mean(scores)), float(np.std(scores))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pbc", type=Path, default=PBC_DEFAULT, help="the PBC labeled folder (<class>/<file>.jpg)")
    p.add_argument("--scales", default="1", help="comma-separated factors the features are multiplied by")
    p.add_argument("--standardize", choices=["both", "on", "off"], default="both")
    p.add_argument("--seeds", default="0,1,2", help="CV seeds (5 folds each); aml-hehr's default is 0,1,2")
    p.add_argument("--heads", default="abmil-gated,abmil-paper")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = p.parse_args()

    import torch

    from protocols import get_protocol

    torch.set_num_threads(1)
    if not args.pbc.is_dir():
        print(f"no PBC images at {args.pbc} (see shared/data/README.md); pass --pbc", file=sys.stderr)
        return 2
    seeds = tuple(int(s) for s in args.seeds.split(","))
    heads = [get_protocol(name) for name in ("abmil-gated", "abmil-paper") if name in args.heads.split(",")]
    switches = {"both": (False, True), "on": (True,), "off": (False,)}[args.standardize]
    rows = planted_layout(args.pbc)
    features = color_histograms([r[2] for r in rows])
    design = planted_design(rows, seeds)
    title = (f"# ABMIL on the planted layout (issue 11): {len(design.bag_ids)} patients, {len(features)} cells, "
             f"color-histogram (dim {features.shape[1]}), seeds {list(seeds)} x 5 folds")
    lines = [title, "",
             "| scale | model | standardize | balanced accuracy (mean ± std) | best epochs (median) | seconds |",
             "|---|---|---|---|---|---|"]
    for scale in (float(s) for s in args.scales.split(",")):
        x = features * np.float32(scale)
        mean, std = reference(x, design)
        lines.append(f"| {scale:g} | mean-pool + StandardScaler + LogisticRegression | - | {mean:.3f} ± {std:.3f} | - | - |")
        print(lines[-1], flush=True)
        for head in heads:
            for on in switches:
                protocol = dataclasses.replace(head, standardize=on)
                best = []
                fit = protocol.fit

                def recording_fit(*a, _fit=fit, best=best, **k):
                    result = _fit(*a, **k)
                    best.append(result.best_epoch)
                    return result

                object.__setattr__(protocol, "fit", recording_fit)  # frozen dataclass: record best epochs
                t0 = time.perf_counter()
                evaluation = protocol.evaluate(x, design)
                seconds = time.perf_counter() - t0
                m, s = evaluation.mean["balanced_accuracy"], evaluation.std["balanced_accuracy"]
                epochs = np.median([b for b in best if b is not None]) if any(b is not None for b in best) else "-"
                lines.append(f"| {scale:g} | {head.name} | {on} | {m:.3f} ± {s:.3f} | {epochs} | {seconds:.0f} |")
                print(lines[-1], flush=True)
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
