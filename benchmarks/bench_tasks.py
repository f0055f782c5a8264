"""The paper's tasks at their real scale, on random features (the images are not available here).

    python benchmarks/bench_tasks.py [--parts bmc,abmil] [--dims 384,1536] [--out report.md]

1. BMC at full size: 137,085 training x 34,266 test rows (the paper's test counts per class from DESIGN.md;
   n = 5 x test + 1 images per class, so train = 4 x test + 1; the real set has 137,108 x 34,266), 21 classes; ``knn-20`` (chunked, exact) and
   ``linear`` (scikit-learn L-BFGS, C = dim x 21 / 100, max_iter 1000) through the harness's protocol objects;
   wall time and peak RSS of each, in its own process, for each feature dim.
2. ABMIL: ``abmil-paper`` and ``abmil-gated`` 5-fold CV (one seed) on 190 bags of ~500 cells (300-700) x 384,
   5 labels, through the protocol's ``evaluate`` on a patient-level design; wall time and epochs run.

Random features carry a weak class signal so that the probes have something to fit; timings are what matter.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

BMC_TEST = {"ABE": 1, "ART": 3926, "BAS": 88, "BLA": 2394, "EBO": 5479, "EOS": 1176, "FGC": 9, "HAC": 81, "KSC": 8,
            "LYI": 13, "LYT": 5248, "MMZ": 611, "MON": 808, "MYB": 1311, "NGB": 1993, "NGS": 5884, "NIF": 707,
            "OTH": 58, "PEB": 548, "PLM": 1525, "PMO": 2398}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bmc_child(protocol_name: str, dim: int, signal: float = 0.3) -> dict:
    import numpy as np

    from protocols import PROTOCOLS

    rng = np.random.default_rng(0)
    test_counts = np.array(list(BMC_TEST.values()))
    train_counts = 4 * test_counts + 1  # n = 5 test + 1 gives floor(0.2 n) = test: the paper's test counts
    n_classes = len(test_counts)
    means = rng.normal(scale=signal, size=(n_classes, dim)).astype(np.float32)
    y_train = np.repeat(np.arange(n_classes), train_counts)
    y_test = np.repeat(np.arange(n_classes), test_counts)
    x_train = means[y_train] + rng.standard_normal((len(y_train), dim), dtype=np.float32)
    x_test = means[y_test] + rng.standard_normal((len(y_test), dim), dtype=np.float32)
    base = _peak_mib()
    t0 = time.perf_counter()
    prediction = PROTOCOLS.get(protocol_name).fit_predict(x_train, y_train, x_test, n_classes)
    seconds = time.perf_counter() - t0
    return {
        "protocol": protocol_name, "dim": dim, "signal": signal, "n_train": int(len(y_train)), "n_test": int(len(y_test)),
        "seconds": seconds, "accuracy": float(np.mean(prediction.labels == y_test)),
        "peak_rss_mib": _peak_mib(), "peak_over_data_mib": _peak_mib() - base, "notes": prediction.notes,
    }


def abmil_child(protocol_name: str) -> dict:
    import numpy as np

    from bench.core.design import BagDesign
    from protocols import PROTOCOLS
    from tasks.splits import patient_splits

    rng = np.random.default_rng(0)
    n_bags, dim, n_classes = 190, 384, 5
    labels = np.arange(n_bags) % n_classes
    directions = rng.normal(size=(n_classes, dim)).astype(np.float32)
    sizes = rng.integers(300, 701, n_bags)
    rows, chunks, start = [], [], 0
    for label, size in zip(labels, sizes):
        cells = rng.standard_normal((size, dim), dtype=np.float32)
        markers = rng.random(size) < 0.1
        cells[markers] += directions[label]
        chunks.append(cells)
        rows.append(np.arange(start, start + size))
        start += size
    features = np.concatenate(chunks)
    t0 = time.perf_counter()
    ids = [f"P{i:03d}" for i in range(n_bags)]
    design = BagDesign([f"c{i}" for i in range(n_classes)], ids, labels, rows, patient_splits(ids, labels, 5, (0,)))
    evaluation = PROTOCOLS.get(protocol_name).evaluate(features, design)
    return {"protocol": protocol_name, "bags": n_bags, "cells": int(len(features)), "dim": dim,
            "seconds": time.perf_counter() - t0, "balanced_accuracy": evaluation.mean["balanced_accuracy"],
            "notes": evaluation.warnings[:3], "peak_rss_mib": _peak_mib()}


def _child(kind: str, *args) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="bmc,abmil")
    parser.add_argument("--dims", default="384,1536")
    parser.add_argument("--signal", type=float, default=0.3, help="scale of the class means (smaller: harder)")
    parser.add_argument("--protocols", default="knn-20,linear", help="BMC protocols to time")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = bmc_child(rest[0], int(rest[1]), *map(float, rest[2:3])) if kind == "bmc" else abmil_child(rest[0])
        print(json.dumps(result))
        return 0
    import os

    import torch

    lines = [
        "## The paper's tasks at full size (random features)",
        "",
        f"- Date: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}; command: "
        f"`python benchmarks/bench_tasks.py --parts {args.parts} --dims {args.dims} --signal {args.signal} "
        f"--protocols {args.protocols}`",
        f"- Machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads); each "
        "measurement in its own process; peak RSS = the process's maximum resident set",
        "",
    ]
    if "bmc" in args.parts:
        lines += ["| BMC protocol | dim | class signal | train x test | seconds | peak RSS MiB (over the data) | accuracy | notes |",
                  "|---|---|---|---|---|---|---|---|"]
        for dim in (int(d) for d in args.dims.split(",")):
            for protocol in args.protocols.split(","):
                r = _child("bmc", protocol, dim, args.signal)
                lines.append(f"| {protocol} | {dim} | {r['signal']} | {r['n_train']:,} x {r['n_test']:,} | {r['seconds']:.1f} | "
                             f"{r['peak_rss_mib']:.0f} (+{r['peak_over_data_mib']:.0f}) | {r['accuracy']:.3f} | "
                             f"{'; '.join(r['notes'])} |")
                print(lines[-1], flush=True)
        lines.append("")
    if "abmil" in args.parts:
        lines += ["| MIL protocol | bags | cells | dim | 5-fold CV seconds (1 seed) | balanced accuracy | notes |",
                  "|---|---|---|---|---|---|---|"]
        for protocol in ("abmil-paper", "abmil-gated"):
            r = _child("abmil", protocol)
            lines.append(f"| {protocol} | {r['bags']} | {r['cells']:,} | {r['dim']} | {r['seconds']:.1f} | "
                         f"{r['balanced_accuracy']:.3f} | {'; '.join(r['notes'])} |")
            print(lines[-1], flush=True)
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
