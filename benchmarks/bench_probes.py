"""The ``knn-1``, ``knn-20`` and ``linear`` protocols against scikit-learn on random features: time, peak RSS
and the number of differing predictions, each measurement in its own fresh process.

    python benchmarks/bench_probes.py [--quick] [--out report.md] [--n-train N --n-test N --dim D --n-classes C]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from measure import CpuMeter, hwm_kib, log, md_table, mib, parser, rss_kib, run_benchmark, wait_quiet

PROBES = ("knn-1", "knn-20", "linear")


def make_features(n_train: int, n_test: int, dim: int, n_classes: int, seed: int = 0):
    """Gaussian classes: class means N(0, 0.15^2) per dimension plus unit noise, float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = (0.15 * rng.standard_normal((n_classes, dim))).astype(np.float32)
    y_train = rng.integers(0, n_classes, n_train)
    y_test = rng.integers(0, n_classes, n_test)
    x_train = means[y_train] + rng.standard_normal((n_train, dim), dtype=np.float32)
    x_test = means[y_test] + rng.standard_normal((n_test, dim), dtype=np.float32)
    return x_train, y_train, x_test, y_test


def probe_child(args) -> None:
    """In a fresh process: one probe (hemabench or sklearn) on the random features; prints JSON."""
    import warnings

    import numpy as np
    import sklearn.linear_model  # noqa: F401  (import before the baseline RSS)
    import sklearn.neighbors  # noqa: F401

    from protocols import get_protocol

    impl, name = args._probe.split(":")
    x_train, y_train, x_test, y_test = make_features(args.n_train, args.n_test, args.dim, args.n_classes)
    base_rss = rss_kib()
    info = {}
    t0 = time.perf_counter()
    if impl == "hemabench":
        protocol = get_protocol(name)
        prediction = protocol.fit_predict(x_train, y_train, x_test, args.n_classes)
        labels = prediction.labels
        info["notes"] = list(prediction.notes)
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier

        if name.startswith("knn"):
            model = KNeighborsClassifier(n_neighbors=int(name.split("-")[1])).fit(x_train, y_train)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model = LogisticRegression(C=args.dim * args.n_classes / 100, max_iter=1000).fit(x_train, y_train)
            info["n_iter"] = int(np.max(model.n_iter_))
            info["notes"] = sorted({str(w.message).splitlines()[0] for w in caught})
        labels = model.predict(x_test)
    seconds = time.perf_counter() - t0
    np.save(args._pred_out, np.asarray(labels, dtype=np.int64))
    print(json.dumps({"seconds": seconds, "base_rss_kib": base_rss, "peak_rss_kib": hwm_kib(),
                      "accuracy": float(np.mean(np.asarray(labels) == y_test)), **info}))


def measure(args, scratch: Path) -> dict:
    import numpy as np

    sizes = {"n_train": args.n_train, "n_test": args.n_test, "dim": args.dim, "n_classes": args.n_classes}
    out = {"sizes": sizes, "runs": {}}
    for name in PROBES:
        for impl in ("hemabench", "sklearn"):
            log(f"{impl} {name}")
            pred = scratch / f"pred-{impl}-{name}.npy"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_probe", f"{impl}:{name}", "--_pred-out", str(pred)]
            cmd += [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
            wait_quiet()
            with CpuMeter() as meter:
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=scratch)
            if proc.returncode != 0:
                raise SystemExit(f"probe {impl}:{name} failed:\n{proc.stderr}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["process_wall_s"] = meter.wall
            result["foreign_cpu_s"] = meter.foreign
            result["pred"] = np.load(pred)
            out["runs"][(impl, name)] = result
        a, b = out["runs"][("hemabench", name)]["pred"], out["runs"][("sklearn", name)]["pred"]
        out["runs"][("hemabench", name)]["differing"] = int(np.sum(a != b))
    return out


def report(p3: dict) -> str:
    s = p3["sizes"]
    rows = []
    for name in PROBES:
        ours, ref = p3["runs"][("hemabench", name)], p3["runs"][("sklearn", name)]
        ref_label = ("KNeighborsClassifier(n_neighbors=%s)" % name.split("-")[1] if name.startswith("knn")
                     else f"LogisticRegression(C={s['dim'] * s['n_classes'] / 100:g}, max_iter=1000)")
        notes = "; ".join(ours.get("notes", []) + ([f"sklearn n_iter={ref['n_iter']}"] if "n_iter" in ref else [])
                          + ref.get("notes", []))
        rows.append([
            f"`{name}`", ref_label, f"{ours['seconds']:.2f}", f"{ref['seconds']:.2f}",
            f"{ours['seconds'] / ref['seconds']:.2f}", f"{ours['differing']} / {s['n_test']}",
            f"{100 * ours['accuracy']:.1f} / {100 * ref['accuracy']:.1f}",
            f"{mib(ours['peak_rss_kib'])} (+{mib(ours['peak_rss_kib'] - ours['base_rss_kib'])})",
            f"{mib(ref['peak_rss_kib'])} (+{mib(ref['peak_rss_kib'] - ref['base_rss_kib'])})",
            notes or "",
            f"{ours['foreign_cpu_s']:.1f} / {ref['foreign_cpu_s']:.1f}",
        ])
    return "\n".join([
        "## Protocols vs scikit-learn on random features",
        "",
        f"{s['n_train']:,} train x {s['n_test']:,} test x {s['dim']:,} dims, {s['n_classes']} classes, float32, seed 0 "
        "(class means N(0, 0.15²) per dimension + unit Gaussian noise). Each measurement runs in its own fresh "
        "process: `fit_predict(x_train, y_train, x_test, n_classes)` for hemabench, `fit(...).predict(x_test)` for "
        "scikit-learn (the hemabench protocols also compute class probabilities).",
        "",
        md_table(["protocol", "scikit-learn reference", "hemabench s", "sklearn s", "hemabench/sklearn time",
                "differing predictions", "accuracy % (hemabench / sklearn)", "peak RSS MiB hemabench (+ over data)",
                "peak RSS MiB sklearn (+ over data)", "notes", "other processes' CPU s (whole process)"], rows),
        "",
        "Peak RSS: `VmHWM` of the measuring process; in brackets the rise over its RSS once the data were "
        "generated and the libraries imported.",
    ])


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=13_700)
    p.add_argument("--n-test", type=int, default=3_400)
    p.add_argument("--dim", type=int, default=1_536)
    p.add_argument("--n-classes", type=int, default=8)
    p.add_argument("--_probe", help=argparse.SUPPRESS)
    p.add_argument("--_pred-out", dest="_pred_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._probe:
        probe_child(args)
        return 0
    if args.quick:
        args.n_train, args.n_test, args.dim = args.n_train // 10, args.n_test // 10, args.dim // 10
    return run_benchmark(args, "hemabench protocols vs scikit-learn", "bench_probes.py",
                         lambda home, scratch: [report(measure(args, scratch))])


if __name__ == "__main__":
    sys.exit(main())
