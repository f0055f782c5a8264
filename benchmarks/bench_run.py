"""`bench run` wall time with a cold feature cache, then again with `--overwrite always` (cache hit), and a
breakdown of what the cached run still spends its time on.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_run.py [--out report.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from measure import CpuMeter, fmt, log, md_table, parser, run_benchmark, wait_quiet


def _bench_command() -> list[str]:
    script = Path(sys.executable).with_name("bench")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from bench.cli import app; app()"]


def stages_child(args) -> None:
    """In a fresh process: the cached path of `bench run`, step by step through the runner's own functions."""
    t_start = time.perf_counter()
    marks = []

    def mark(name):
        marks.append((name, time.perf_counter()))

    import bench.cli  # noqa: F401  (typer, rich)

    mark("import bench.cli (typer, rich)")
    import torch  # noqa: F401

    mark("import torch, numpy")
    from bench.core.record import environment
    from bench.runner import RunOptions, build_extractor, evaluation_inputs, plan_pair, task_features

    options = RunOptions(results_dir=Path("unused-results"), progress=False)
    plan = plan_pair(args.extractor, "synthetic-wbc", None, options)
    mark("plan: resolve extractor, task, protocols (imports timm, torchvision, sklearn)")
    built = build_extractor(plan.entry, options, log=lambda message: None)
    mark("build: create the model (seeded random init), sha256 of its state")
    primary = task_features(built, plan.task, options, log=lambda message: None)
    assert primary.stats.cached, "expected a cache hit"
    mark("load features: check the generated data, scan + sha256 every image, cache hit (memmap)")
    inputs = evaluation_inputs(plan, primary, options, log=lambda message: None)
    for protocol in plan.todo:
        protocol.evaluate(inputs.features, inputs.design)
    mark("evaluate knn-1, knn-20, linear (5 folds each)")
    environment("cpu")
    mark("environment(): package versions, git rev-parse/status")
    previous, stages = t_start, []
    for name, t in marks:
        stages.append([name, t - previous])
        previous = t
    print(json.dumps({"stages": stages, "total_in_process_s": previous - t_start}))


def measure(args, home: Path, scratch: Path) -> dict:
    env = {**os.environ, "BENCH_HOME": str(home)}
    results = scratch / "results"
    base = _bench_command() + ["run", "--extractor", args.extractor, "--task", "synthetic-wbc",
                               "--results", str(results), "--no-progress"]
    out = {"command": base}
    cache = home / "cache"
    if cache.exists() and any(cache.iterdir()):
        raise SystemExit(f"{cache} is not empty: the cold run would not be cold; use a fresh BENCH_HOME")
    # generate the synthetic data outside the timing
    from bench.core.record import ResultRecord
    from tasks import get_task

    get_task("synthetic-wbc").load(None, data_home=home / "data")

    def run(extra: list[str]) -> tuple[float, dict]:
        wait_quiet()
        with CpuMeter() as meter:
            proc = subprocess.run(base + extra, env=env, capture_output=True, text=True, cwd=scratch)
        wall = meter.wall
        out.setdefault("foreign_cpu_s", []).append(meter.foreign)
        if proc.returncode != 0:
            raise SystemExit(f"bench run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        timings = {}
        for path in sorted(results.rglob("*.json")):
            record = ResultRecord.read(path)
            timings[record.protocol.name] = record.timings
        return wall, timings

    log("bench run, cold cache")
    out["cold_s"], out["cold_timings"] = run([])
    log("bench run --overwrite always, cache hit")
    out["cached_s"], out["cached_timings"] = run(["--overwrite", "always"])

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    out["python_startup_s"] = time.perf_counter() - t0
    log("stage breakdown of the cached path (fresh process)")
    wait_quiet()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_stages", "--extractor", args.extractor],
                          env=env, capture_output=True, text=True, cwd=scratch)
    out["stages_wall_s"] = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"stage breakdown failed:\n{proc.stderr}")
    out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def report(p2: dict) -> str:
    cold_t, hot_t = p2["cold_timings"], p2["cached_timings"]
    any_cold = next(iter(cold_t.values()))
    any_hot = next(iter(hot_t.values()))
    cold_eval = sum(t["evaluation_seconds"] for t in cold_t.values())
    hot_eval = sum(t["evaluation_seconds"] for t in hot_t.values())
    cmd = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(p2["command"]))
    fc = p2["foreign_cpu_s"]
    rows = [
        ["cold cache (extracts)", f"{p2['cold_s']:.2f}", any_cold["cached"], f"{any_cold['extraction_seconds']:.2f}",
         fmt(any_cold.get("images_per_second"), 2), f"{cold_eval:.2f}", f"{fc[0]:.1f}"],
        ["`--overwrite always` (cache hit)", f"{p2['cached_s']:.2f}", any_hot["cached"],
         f"{any_hot['extraction_seconds']:.2f}", fmt(any_hot.get("images_per_second"), 2), f"{hot_eval:.2f}",
         f"{fc[1]:.1f}"],
    ]
    stage_rows = [[name, f"{s:.2f}"] for name, s in p2["stages"]]
    stage_rows.append(["**sum, in process**", f"**{p2['total_in_process_s']:.2f}**"])
    stage_rows.append(["wall time of that process (adds interpreter start-up and exit)", f"{p2['stages_wall_s']:.2f}"])
    stage_rows.append(["for reference: `python -c pass`", f"{p2['python_startup_s']:.2f}"])
    return "\n".join([
        "## `bench run`: cold cache vs cache hit",
        "",
        f"Command (subprocess, `BENCH_HOME` = the benchmark's folder, synthetic data already generated): `{cmd}`; "
        "the second run adds `--overwrite always` so that the three result files are redone from cached features.",
        "",
        md_table(["run", "wall s", "features cached", "extraction s (result JSON)", "img/s (result JSON)",
                "evaluation s, 3 protocols (result JSON)", "other processes' CPU s"], rows),
        "",
        f"Difference cold - cached: {p2['cold_s'] - p2['cached_s']:.2f} s; the cold run's extraction loop alone "
        f"took {any_cold['extraction_seconds']:.2f} s (its result JSON). Evaluation differs by "
        f"{cold_eval - hot_eval:+.2f} s between the two runs.",
        "",
        "What the cached run still does, measured step by step in a fresh process that calls the runner's own "
        "steps (`plan_pair`, `build_extractor`, `task_features`, `evaluation_inputs`, `protocol.evaluate`; the "
        "results are not written):",
        "",
        md_table(["stage", "seconds"], stage_rows),
    ])


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--extractor", default="vit-s14-random")
    p.add_argument("--_stages", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._stages:
        stages_child(args)
        return 0
    return run_benchmark(args, "hemabench `bench run`: cold vs cached", "bench_run.py",
                         lambda home, scratch: [report(measure(args, home, scratch))])


if __name__ == "__main__":
    sys.exit(main())
