"""What bf16 (and fp16) autocast changes against fp32: the same extractor, the same real PBC images, kNN-20.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_precision.py [--extractors vit-s14-random,resnet50-trunc-random]
        [--per-class 50] [--precisions fp32,bf16] [--weights NAME=PATH ...] [--device auto] [--out report.md]

Each extractor's features of the same images are extracted through the harness (``bench.runner.load_pair``, the
feature cache, ``--precision``) once per precision; kNN-20 (the paper's protocol) runs on each over the same
5 stratified folds. Reported per extractor and low precision, against fp32: the largest |feature difference|
relative to the spread of the fp32 features (the largest |feature - the mean feature over the images|: a
random-init ViT's features share a large constant part that would hide the differences), the share of test
predictions that agree, weighted F1 (mean and std over the
folds) and |delta weighted F1| beside the fold std (the noise a reader sees in the paper's tables).

Weights: the built-in ``*-random`` entries by default (pretrained weights cannot be downloaded on the machines
this was written on); pass ``--weights dinobloom-s=/path/DinoBloom-S.pth`` to measure a published model.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import copy_pbc_subset, emit_report, machine_info, real_images_parser  # noqa: E402


def features_for(name: str, weights: str | None, folder: Path, precision: str, device: str):
    from bench.runner import RunOptions, load_pair

    options = RunOptions(progress=False, precision=precision, device=device,
                         weights=Path(weights) if weights else None)
    return load_pair(name, f"imagefolder:{folder}", options, log=lambda message: None)


def knn_predictions(pair):
    from protocols import get_protocol

    design = pair.dataset.design(pair.keep, pair.dataset.classes)
    evaluation = get_protocol("knn-20").evaluate(pair.features, design)
    order = evaluation.predictions.sort_values("row")
    folds = [fold["weighted_f1"] for fold in evaluation.per_fold]
    return order["prediction"].to_numpy(), folds


def main(argv=None) -> int:
    import numpy as np

    parser = real_images_parser(__doc__.splitlines()[0], "vit-s14-random,resnet50-trunc-random", 50)
    parser.add_argument("--precisions", default="fp32,bf16", help="the first is the reference")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        print(f"needs real images at {args.images} (../shared/data/pbc/labeled)", file=sys.stderr)
        return 2
    weights = dict(item.split("=", 1) for item in args.weights)
    precisions = args.precisions.split(",")
    info = machine_info()
    lines = ["## bf16 against fp32: features and kNN-20 on real PBC images", "",
             f"{info['cpu']}, {info['cpus_usable']} usable CPUs, torch {info['torch']}, device {args.device}; "
             f"{args.per_class} images per class of {args.images} (8 classes), kNN-20 over 5 stratified folds", "",
             "| extractor | weights | precision | max abs feature diff / feature spread | predictions agreeing "
             "with fp32 | weighted F1 (mean ± std over folds) | abs delta weighted F1 | extraction img/s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_pbc_subset(args.images, Path(tmp) / "pbc", args.per_class)
        for name in args.extractors.split(","):
            reference = None
            for precision in precisions:
                pair = features_for(name, weights.get(name), folder, precision, args.device)
                predicted, folds = knn_predictions(pair)
                features, f1 = pair.features, float(np.mean(folds))
                rate = "cached" if pair.stats.cached else f"{pair.stats.images_per_second:.1f}"
                if reference is None:
                    reference = (features, predicted, f1)
                    diff, agree, delta = "-", "-", "-"
                else:
                    scale = float(np.abs(reference[0] - reference[0].mean(axis=0)).max()) or 1.0
                    diff = f"{float(np.abs(features - reference[0]).max()) / scale:.2e}"
                    agree = f"{100 * float(np.mean(predicted == reference[1])):.2f} %"
                    delta = f"{100 * abs(f1 - reference[2]):.2f}"
                lines.append(f"| {name} | {'file' if name in weights else 'random init'} | "
                             f"{pair.extractor.entry.precision} | {diff} | {agree} | "
                             f"{100 * f1:.2f} ± {100 * float(np.std(folds)):.2f} | {delta} | {rate} |")
                print(lines[-1], flush=True)
    return emit_report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
