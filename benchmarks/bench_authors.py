"""What the DinoBloom authors' choices change (issue 18), on the same real PBC images: preprocessing, folds, and
the linear probe's float precision.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_authors.py [--extractors resnet50-trunc-random,vit-s14-random]
        [--per-class 200] [--weights NAME=PATH ...] [--device auto] [--out report.md]

For each extractor, the features of the same images are extracted through the harness twice
(``bench.runner.load_pair``): with ``@preprocessing=direct`` (the extractor's transform on the 360 x 363
original) and ``authors-cv`` (a PIL bicubic resize to 224 x 224 first, as the authors' cross-validation code did).
On each, kNN-20 and the paper's linear probe run over the portable folds and over the authors' folds
(StratifiedKFold(5) without shuffling over the sorted names). Reported:

1. preprocessing: the share of test predictions that agree between the two, and |delta weighted F1|, on the same
   (portable) folds;
2. folds: weighted F1 (mean ± std over folds) under each fold scheme, on the same features;
3. the linear probe in float32 (scikit-learn on float32 arrays, what the harness did before) against float64
   (the authors' and now ours): predictions that differ, folds where L-BFGS did not converge.

Weights: the built-in ``*-random`` entries by default (pretrained weights cannot be downloaded where this was
written); ``--weights dinobloom-s=/path/DinoBloom-S.pth`` measures a published model.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import copy_pbc_subset, emit_report, machine_info, real_images_parser  # noqa: E402

from bench.core.settings import use_scipy_array_api  # noqa: E402

use_scipy_array_api()  # before anything imports scipy: the linear probe's GPU path needs it


def features_for(name: str, weights: str | None, folder: Path, preprocessing: str, device: str):
    from bench.runner import RunOptions, load_pair

    options = RunOptions(progress=False, device=device, weights=Path(weights) if weights else None)
    return load_pair(name, f"imagefolder:{folder}@preprocessing={preprocessing}", options, log=lambda message: None)


def design_for(pair, folds: str):
    """The pair's cell design under a fold scheme (the same rows and labels)."""
    import dataclasses

    task = dataclasses.replace(pair.task, fold_scheme=folds)
    dataset = task.load(pair.dataset.root, data_home=pair.dataset.root)
    return dataset.design(pair.keep, dataset.classes)


def evaluate(protocol, pair, design):
    """(predictions in row order, weighted F1 per fold, warnings)."""
    evaluation = protocol.evaluate(pair.features, design)
    order = evaluation.predictions.sort_values("row")
    return order["prediction"].to_numpy(), [f["weighted_f1"] for f in evaluation.per_fold], evaluation.warnings


def float32_probe(pair, design):
    """The probe as the harness ran it before: scikit-learn on float32 arrays (its loss then in float32)."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(pair.features, dtype=np.float32)
    out = np.empty(len(x), dtype=np.int64)
    unconverged = 0
    for _, train, test in design.splits:
        c = x.shape[1] * len(np.unique(design.labels[train])) / 100
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=1000).fit(x[train], design.labels[train])
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        out[test] = model.predict(x[test])
    return out, unconverged


def main(argv=None) -> int:
    import numpy as np

    from protocols import get_protocol

    parser = real_images_parser(__doc__.splitlines()[0], "resnet50-trunc-random,vit-s14-random", 200)
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        print(f"needs real images at {args.images} (../shared/data/pbc/labeled)", file=sys.stderr)
        return 2
    weights = dict(item.split("=", 1) for item in args.weights)
    info = machine_info()
    head = [f"{info['cpu']}, {info['cpus_usable']} usable CPUs, torch {info['torch']}; {args.per_class} images per "
            f"class of {args.images} (8 classes, the first by name); weighted F1 in percent, mean ± std over 5 "
            "folds", ""]
    pre = ["## Preprocessing: authors-cv (PIL bicubic to 224 first) against direct, portable folds", "", *head,
           "| extractor | protocol | predictions agreeing | weighted F1 direct | weighted F1 authors-cv | "
           "abs delta |", "|---|---|---:|---:|---:|---:|"]
    folds_lines = ["## Folds: the authors' (StratifiedKFold, sorted names) against the portable ones", "", *head,
                   "| extractor | preprocessing | protocol | portable | authors | abs delta |",
                   "|---|---|---|---:|---:|---:|"]
    probe = ["## Linear probe: float32 (before) against float64 (the authors', now ours), portable folds", "", *head,
             "| extractor | preprocessing | predictions differing | folds unconverged float32 / float64 | "
             "weighted F1 float32 | weighted F1 float64 |", "|---|---|---:|---:|---:|---:|"]

    def pct(values) -> str:
        return f"{100 * float(np.mean(values)):.1f} ± {100 * float(np.std(values)):.1f}"

    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_pbc_subset(args.images, Path(tmp) / "pbc", args.per_class)
        for name in args.extractors.split(","):
            by_pre = {}
            for preprocessing in ("direct", "authors-cv"):
                pair = features_for(name, weights.get(name), folder, preprocessing, args.device)
                designs = {folds: design_for(pair, folds) for folds in ("portable", "authors")}
                scores = {}
                for protocol in (get_protocol("knn-20"), get_protocol("linear")):
                    for folds, design in designs.items():
                        scores[protocol.name, folds] = evaluate(protocol, pair, design)
                    portable, authors = scores[protocol.name, "portable"][1], scores[protocol.name, "authors"][1]
                    folds_lines.append(f"| {name} | {preprocessing} | {protocol.name} | {pct(portable)} | "
                                       f"{pct(authors)} | {100 * abs(np.mean(portable) - np.mean(authors)):.2f} |")
                    print(folds_lines[-1], flush=True)
                labels32, unconverged32 = float32_probe(pair, designs["portable"])
                labels64, f1_64, notes = scores["linear", "portable"]
                truth = designs["portable"].labels
                from sklearn.metrics import f1_score

                f1_32 = [f1_score(truth[test], labels32[test], average="weighted")
                         for _, _, test in designs["portable"].splits]
                unconverged64 = sum("did not converge" in n for n in notes)
                probe.append(f"| {name} | {preprocessing} | {int(np.sum(labels32 != labels64))} of {len(truth)} | "
                             f"{unconverged32} / {unconverged64} | {pct(f1_32)} | {pct(f1_64)} |")
                print(probe[-1], flush=True)
                by_pre[preprocessing] = scores
            for protocol in ("knn-20", "linear"):
                a, b = by_pre["direct"][protocol, "portable"], by_pre["authors-cv"][protocol, "portable"]
                pre.append(f"| {name} | {protocol} | {100 * float(np.mean(a[0] == b[0])):.1f} % | {pct(a[1])} | "
                           f"{pct(b[1])} | {100 * abs(np.mean(a[1]) - np.mean(b[1])):.2f} |")
                print(pre[-1], flush=True)
    return emit_report([*pre, "", *folds_lines, "", *probe], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
