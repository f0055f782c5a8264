"""The exact CPU kNN (``protocols.knn.knn_scores``) against the accelerator path
(``protocols.knn_device.knn_scores_device``) on random clustered features: seconds, rows that fell back to the
exact path, and agreement of the predicted labels (must be 100 %).

    python benchmarks/bench_knn_device.py [--quick] [--sizes cpu,bmc] [--protocols knn-1,knn-20,knn-cosine]
                                          [--device auto|cpu|cuda] [--out report.md]

Sizes: ``cpu`` is 20,000 training x 5,000 test rows x 384 dims, 8 classes (fits a 2-core machine);
``bmc`` is BMC's full size, 137,085 x 34,266 x 1,536, 21 classes with the paper's test counts per class
(training = 4 x test + 1 per class, as bench_tasks.py), run by default only when a CUDA device is present
(the CPU reference alone takes minutes). Features, float32: a common offset N(0, 1) per dimension (features
of real extractors are not centred), per class 4 sub-cluster means N(0, 0.5^2) around a class mean
N(0, 0.3^2), unit Gaussian noise. The device path is warmed up once on a tiny problem (CUDA context, cuBLAS
handles) before the timed passes.
"""

from __future__ import annotations

import sys
import time
from functools import partial

from measure import CpuMeter, log, md_table, parser, run_benchmark, wait_quiet

SIZES = {  # name: (n_train, n_test, dim, n_classes)
    "cpu": (20_000, 5_000, 384, 8),
    "bmc": (137_085, 34_266, 1_536, 21),
}
BMC_TEST = (1, 3926, 88, 2394, 5479, 1176, 9, 81, 8, 13, 5248, 611, 808, 1311, 1993, 5884, 707, 58, 548, 1525, 2398)


def make_features(n_train: int, n_test: int, dim: int, n_classes: int, seed: int = 0):
    """Clustered float32 features (module docstring); BMC's class counts at BMC's size, uniform labels else."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if (n_train, n_test, n_classes) == SIZES["bmc"][:2] + SIZES["bmc"][3:]:
        counts = np.array(BMC_TEST)
        y_train, y_test = np.repeat(np.arange(n_classes), 4 * counts + 1), np.repeat(np.arange(n_classes), counts)
    else:
        y_train, y_test = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_test)
    offset = rng.standard_normal(dim)
    class_means = offset + 0.3 * rng.standard_normal((n_classes, dim))
    sub_means = (class_means[:, None, :] + 0.5 * rng.standard_normal((n_classes, 4, dim))).astype(np.float32)

    def draw(y):
        x = rng.standard_normal((len(y), dim), dtype=np.float32)
        x += sub_means[y, rng.integers(0, 4, len(y))]
        return x

    return draw(y_train), y_train, draw(y_test), y_test


def protocol_settings(name: str) -> dict:
    """The knn_scores keywords KNNProtocol.fit_predict passes for the registered protocol ``name``."""
    from protocols import get_protocol

    protocol = get_protocol(name)
    return {"k": protocol.k, "metric": protocol.metric, "temperature": protocol.temperature,
            "sklearn_ties": protocol.metric == "euclidean" and protocol.weighting == "uniform"}


def timed(fn):
    """(result, wall seconds, other processes' CPU seconds) of ``fn()`` after waiting for a quiet machine."""
    wait_quiet()
    with CpuMeter() as meter:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return result, seconds, meter.foreign


def measure_size(size: str, dims: tuple, protocols: list[str], device: str) -> list[list]:
    import numpy as np

    from protocols.knn import knn_scores
    from protocols.knn_device import DeviceKNNStats, knn_scores_device

    n_train, n_test, dim, n_classes = dims
    x_train, y_train, x_test, _ = make_features(n_train, n_test, dim, n_classes)
    rows = []
    for name in protocols:
        settings = protocol_settings(name)
        k = settings.pop("k")
        log(f"{size}: {name} knn_scores")
        exact, exact_s, exact_foreign = timed(partial(knn_scores, x_train, y_train, x_test, n_classes, k, **settings))
        log(f"{size}: {name} knn_scores_device on {device}")
        stats = DeviceKNNStats()
        ours, ours_s, ours_foreign = timed(partial(knn_scores_device, x_train, y_train, x_test, n_classes, k,
                                                   device=device, stats=stats, **settings))
        agree = np.mean(ours.argmax(axis=1) == exact.argmax(axis=1))
        vote_diff = np.max(np.abs(ours - exact) / np.maximum(np.abs(exact), 1e-300))
        steps = ", ".join(f"{key} {value:.2f}" for key, value in stats.seconds.items())
        rows.append([
            size, f"{n_train:,} x {n_test:,} x {dim:,}", f"`{name}`", device, f"{exact_s:.2f}", f"{ours_s:.2f}",
            steps, f"{exact_s / ours_s:.1f}", f"{stats.n_uncertain} + {stats.n_replayed}",
            f"{stats.n_reranked_pairs / n_test:.1f}", f"{100 * agree:.3f}", f"{vote_diff:.1e}",
            f"{exact_foreign:.1f} / {ours_foreign:.1f}",
        ])
    return rows


def report(rows: list[list], extra_candidates: int) -> str:
    return "\n".join([
        "## knn_scores (exact, CPU float64) vs knn_scores_device",
        "",
        md_table(["size", "train x test x dim", "protocol", "device", "knn_scores s", "device path s",
                  "device path steps s", "speed-up", "exact rows (uncertain + tie replays)",
                  "float64 re-ranked pairs / row", "label agreement %", "max relative vote difference",
                  "other processes' CPU s (exact / device)"], rows),
        "",
        (f"Device path: k + {extra_candidates} float32 candidates per row; `uncertain`: rows whose float32 "
         "certificate failed, `tie replays`: rows whose k-th-neighbour tie mixes labels (scikit-learn's heap "
         "replayed on the full float64 row); both are computed over the whole training set on the CPU. Votes: "
         "counts for knn-1/knn-20 (must be identical), exp(sim/T) masses for knn-cosine (~1e-15)."),
    ])


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", help="comma-separated from " + ", ".join(SIZES) + " (default: cpu, and bmc with CUDA)")
    p.add_argument("--protocols", default="knn-1,knn-20,knn-cosine")
    p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    args = p.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    device = ("cuda" if cuda else "cpu") if args.device == "auto" else args.device
    sizes = args.sizes.split(",") if args.sizes else ["cpu"] + (["bmc"] if cuda else [])
    protocols = args.protocols.split(",")

    def measure(home, scratch):
        import numpy as np

        from protocols.knn_device import knn_scores_device

        rng = np.random.default_rng(1)  # warm-up: CUDA context, cuBLAS handles, torch's CPU kernels
        knn_scores_device(rng.standard_normal((64, 8)), np.arange(64) % 2, rng.standard_normal((8, 8)), 2, 3,
                          device=device)
        rows = []
        for size in sizes:
            n_train, n_test, dim, n_classes = SIZES[size]
            if args.quick:
                n_train, n_test = n_train // 4, n_test // 4
            rows += measure_size(size, (n_train, n_test, dim, n_classes), protocols, device)
        return [report(rows, extra_candidates=32)]

    return run_benchmark(args, "knn_scores vs knn_scores_device", "bench_knn_device.py", measure)


if __name__ == "__main__":
    sys.exit(main())
