"""`bench leaderboard` at the paper's table size: the bootstrap intervals of every result, computed in bulk from
confusion counts (leaderboard/stats.py) against the per-resample scikit-learn loop they replace, and the whole
board built from a results folder of the full table's shape.

The folder: 16 extractors x {acevedo (17,092 predictions), acevedo-11 (16,000), bmc (34,266: the paper's test
split)} x {knn-1, knn-20, linear, linear-std, knn-cosine} = 240 cell results, plus 16 x 2 abmil results on 189
patients x 3 seeds. Predictions are random (70 % correct, the rest a random class): the cost does not depend
on the values.

    python benchmarks/bench_leaderboard.py [--quick] [--out report.md] [--n-boot N]
"""

from __future__ import annotations

import json
from pathlib import Path

from measure import CpuMeter, fmt, log, md_table, parser, run_benchmark, wait_quiet

CELL_TASKS = {"acevedo": (17_092, 8), "acevedo-11": (16_000, 11), "bmc": (34_266, 21)}
CELL_PROTOCOLS = ("knn-1", "knn-20", "linear", "linear-std", "knn-cosine")
BAG_PROTOCOLS = ("abmil-paper", "abmil-gated")


def _record(extractor: str, task: str, protocol: str, score: float) -> dict:
    metrics = {m: score for m in ("weighted_f1", "accuracy", "balanced_accuracy")} | {"macro_auroc": None}
    return {"extractor": {"name": extractor}, "task": {"task": task}, "protocol": {"name": protocol},
            "metrics": {"per_fold": [{}] * 5, "mean": metrics, "std": {k: 0.01 for k in metrics}, "main": "weighted_f1"},
            "warnings": []}


def _predictions(n: int, n_classes: int, seed: int, bags: bool = False):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, n_classes, n))
    names = np.array([f"class_{i:02d}" for i in range(n_classes)])
    if bags:
        return pd.DataFrame({"bag": np.tile([f"P{i:03d}" for i in range(n // 3)], 3), "seed": np.repeat([0, 1, 2], n // 3),
                             "label": names[labels], "prediction": names[preds]})
    return pd.DataFrame({"path": [f"img_{i:06d}.jpg" for i in range(n)], "fold": rng.integers(0, 5, n),
                         "label": names[labels], "prediction": names[preds]})


def write_results(root: Path, n_extractors: int) -> int:
    entries, seed = 0, 0
    for e in range(n_extractors):
        name = f"extractor-{e:02d}"
        jobs = [(task, p, n, k, False) for task, (n, k) in CELL_TASKS.items() for p in CELL_PROTOCOLS]
        jobs += [("aml-hehr", p, 189 * 3, 4, True) for p in BAG_PROTOCOLS]
        for task, protocol, n, k, bags in jobs:
            folder = root / name / task
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{protocol}.json").write_text(json.dumps(_record(name, task, protocol, 0.5 + 0.01 * e)))
            _predictions(n, k, seed, bags).to_csv(folder / f"{protocol}.predictions.csv", index=False)
            entries, seed = entries + 1, seed + 1
    return entries


def loop_bootstrap(predictions, metric: str, n_boot: int, seed: int = 0):
    """The pre-issue-12 implementation: one scikit-learn call per resample on the concatenated rows."""
    import numpy as np

    from bench.core.metrics import metric_value

    rows_of = predictions.groupby("path").indices
    units = np.array(sorted(rows_of))
    labels, preds = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
    draws = np.random.default_rng(seed).integers(0, len(units), size=(n_boot, len(units)))
    values = np.array([metric_value(labels[np.concatenate([rows_of[units[i]] for i in d])],
                                    preds[np.concatenate([rows_of[units[i]] for i in d])], metric) for d in draws])
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--loop-boot", type=int, default=100,
                   help="resamples for the old loop (it takes ~0.1-0.4 s per resample at these sizes)")
    args = p.parse_args()
    n_extractors = 2 if args.quick else 16

    def measure(home: Path, scratch: Path) -> list[str]:
        from leaderboard.stats import _multiplicities, bootstrap_ci
        from leaderboard.tables import read_results, render

        rows = []
        for task, (n, k) in CELL_TASKS.items():
            if task == "acevedo-11":
                continue
            frame = _predictions(n, k, seed=0)
            wait_quiet()
            _multiplicities.cache_clear()
            with CpuMeter() as cold:
                _, low, high = bootstrap_ci(frame, "weighted_f1", n_boot=args.n_boot)
            with CpuMeter() as warm:  # the next result of the same task: the draws are shared
                bootstrap_ci(frame, "weighted_f1", n_boot=args.n_boot)
            with CpuMeter() as loop:
                old = loop_bootstrap(frame, "weighted_f1", args.loop_boot)
            _, low, high = bootstrap_ci(frame, "weighted_f1", n_boot=args.loop_boot)
            rows.append([f"{task} ({n:,} predictions, {k} classes)", fmt(loop.wall, 2), fmt(cold.wall, 3),
                         fmt(warm.wall, 3), f"{max(abs(low - old[0]), abs(high - old[1])):.1e}",
                         fmt(cold.foreign + warm.foreign + loop.foreign, 1)])
        log("writing the results folder")
        entries = write_results(scratch / "results", n_extractors)
        wait_quiet()
        _multiplicities.cache_clear()
        with CpuMeter() as board:
            text = render(read_results(scratch / "results"), "md", n_boot=args.n_boot)
        assert "[" in text  # intervals are shown
        wait_quiet()
        with CpuMeter() as again:  # the intervals are now kept beside the predictions
            assert render(read_results(scratch / "results"), "md", n_boot=args.n_boot) == text
        return [
            "## One result's bootstrap interval (weighted F1)",
            md_table(["predictions", f"loop (scikit-learn per resample), {args.loop_boot} resamples s",
                      f"bulk, first result of a task, {args.n_boot} resamples s",
                      f"bulk, next result of the task, {args.n_boot} resamples s",
                      f"max |interval difference| bulk vs loop ({args.loop_boot} resamples)",
                      "other processes' CPU s"], rows),
            f"## The whole board: {entries} results, `render(read_results(dir), 'md', n_boot={args.n_boot})`",
            md_table(["results", "first build s", "rebuild (intervals read from `<protocol>.intervals.json`) s",
                      "other processes' CPU s"],
                     [[entries, fmt(board.wall, 1), fmt(again.wall, 1), fmt(board.foreign + again.foreign, 1)]]),
        ]

    return run_benchmark(args, "hemabench leaderboard benchmark", "bench_leaderboard.py", measure)


if __name__ == "__main__":
    raise SystemExit(main())
