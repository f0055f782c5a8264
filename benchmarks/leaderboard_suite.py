"""The benchmark suite behind the published leaderboard: run what this machine can, render the boards.

    python benchmarks/leaderboard_suite.py --out build/leaderboard [--results DIR] [--quick]

Runs, through the `bench` command line: the weight-free extractors on the embedded synthetic tasks (and the
domain shift between its two stains), the real Acevedo subset in $HEMABENCH_PBC/labeled (default
../shared/data/pbc/labeled) when present
(colour histograms; the ViTs with --full), the paper's extractors whose weights are present in
$BENCH_HOME/weights, and a short trainer run (tiny-cpu) whose exports are evaluated on synthetic-wbc. Then
verifies the submissions in leaderboard/submissions (`bench verify`, with the complete Acevedo copy that
HEMABENCH_ACEVEDO_FULL names, else the subset) and writes leaderboard.md, leaderboard.csv
and index.html (the static page) into --out from both: this suite's rows badged "reproduced by CI", the verified
submissions as such, the paper's reported rows apart. Pairs that fail are
reported and the suite goes on; the exit code says whether any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the real subset (labeled/<class>/*.jpg, unlabeled/*.jpg): $HEMABENCH_PBC, as the tests read it, else ../shared/data/pbc
PBC = Path(os.environ.get("HEMABENCH_PBC") or REPO.parent / "shared" / "data" / "pbc").expanduser() / "labeled"
SUBMISSIONS = REPO / "leaderboard" / "submissions"


def verify_roots() -> list[str]:
    """``bench verify``'s data roots for the examples' sampled re-extraction: the complete Acevedo copy named by
    HEMABENCH_ACEVEDO_FULL (every example's images: the colour histograms are on the complete set, the others on
    the 4,000-image subset, whose files it holds too), else the subset (the complete-set examples are then
    self-reported, their images absent)."""
    full = os.environ.get("HEMABENCH_ACEVEDO_FULL")
    if full:
        return ["--data-root", f"acevedo={full}", "--data-root", f"acevedo-11={full}"]
    return ["--data-root", f"acevedo={PBC}"] if PBC.is_dir() else []


def bench(*args: str) -> int:
    command = [sys.executable, "-m", "bench.cli", *args]
    print("$ bench " + " ".join(args), flush=True)
    return subprocess.run(command, cwd=REPO).returncode


def _synthetic_images() -> Path:
    """Training images when the real subset is absent: the synthetic-wbc images (generated if needed)."""
    from bench.core import settings
    from tasks import get_task

    return get_task("synthetic-wbc").load(None, data_home=settings.data_dir()).root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--full", action="store_true", help="also the ViTs on the real subset (slow on CPU)")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--runs-badge", default="reproduced by CI",
                        help="the badge of this suite's own rows on the HTML board")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    results = (args.results or out / "results").resolve()
    common = ["--results", str(results), "--no-progress"]
    failures = 0
    failures += bench("run", "-e", "color-histogram,vit-s14-random,resnet50-trunc-random", "-t",
                      "synthetic-wbc,synthetic-wbc-shifted", "-p", "knn-1,knn-20,linear,linear-std", *common) != 0
    failures += bench("run", "-e", "color-histogram,vit-s14-random", "-t", "synthetic-wbc=>synthetic-wbc-shifted",
                      "-p", "knn-20,linear-std", *common) != 0
    if PBC.is_dir():
        extractors = "color-histogram,vit-s14-random" if args.full else "color-histogram"
        failures += bench("run", "-e", extractors, "-t", f"imagefolder:{PBC}", *common) != 0
    from bench.core import settings
    from extractors import EXTRACTORS, get_extractor
    from extractors.sources import status

    present = [n for n in EXTRACTORS.names() if status(get_extractor(n), settings.weights_dir())[0] == "present"]
    if present:
        failures += bench("run", "-e", ",".join(present), "-t", "synthetic-wbc", *common) != 0
    if args.train_steps:
        failures += bench("train", "--preset", "tiny-cpu", "--data", str(PBC.parent / "unlabeled" if PBC.is_dir() else _synthetic_images()),
                          "--out", str(out / "train"), "--max-steps", str(args.train_steps), "--eval-task",
                          "synthetic-wbc", "--results", str(results), "--set", f"export_every={max(args.train_steps // 2, 1)}",
                          "--set", "num_workers=0") != 0
    out.mkdir(parents=True, exist_ok=True)
    board = ["--results", str(results)]
    if SUBMISSIONS.is_dir():  # the repository's submissions: verified (a refused one fails the suite), then shown
        roots = verify_roots()
        failures += bench("verify", str(SUBMISSIONS), *roots) != 0
        board += ["--submissions", str(SUBMISSIONS), "--runs-badge", args.runs_badge]
    for fmt, name in (("md", "leaderboard.md"), ("csv", "leaderboard.csv"), ("html", "index.html")):
        failures += bench("leaderboard", *board, "--format", fmt, "--out", str(out / name)) != 0
    print(f"leaderboard written to {out} ({failures} failing step(s))")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
