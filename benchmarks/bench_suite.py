"""The suite's wall time: `bench suite run` for each extractor on the real data present, every run of the suite
timed from its log, and the summary's scores.

    python benchmarks/bench_suite.py -e color-histogram [-e vit-s14-random] [-t bccd-wbc ...] [--out report.md]

The data home is made of links to the copies the environment names (nothing is copied): HEMABENCH_ACEVEDO_FULL (the
`PBC_dataset_normal_DIB` folder), HEMABENCH_BCCD (a clone of apple2373/BCCD), HEMABENCH_SEGMENTATION_WBC (a clone of
zxaoyou/segmentation_WBC), HEMABENCH_CHULA (a clone of Chula-PIC-Lab/Chula-RBC-12-Dataset); in place of the complete
Acevedo, HEMABENCH_PBC (the shared subset's folder, whose `labeled/` holds 500 images a class; the tests read the same
variable) runs `acevedo` on that subset (folds dealt over the files present, so not its canonical split, as the
results record). Without any of them,
the suite runs on generated copies of bccd-wbc and sslseg-1/2 (the layout tests/test_suite.py builds). A fresh
BENCH_HOME (feature cache) per call, so every feature is extracted: the time of a first run.

    python benchmarks/bench_suite.py -e vit-s14-random --keep /work/suite_full [--out report.md]

--keep DIR: the feature cache (DIR/bench_home) and the results (DIR/results) persist in DIR, so a run that is
stopped (a session's end, a kill) goes on from its complete shards and its finished results the next time: how a
ViT's suite on the complete copies (2.6-4.4 h of a 2-core CPU) is run in parts. Each part's output is appended to
DIR/log.txt, each line stamped with the time; the report then gives that part's wall time, and the minutes per run
count only what that part did.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIES = {  # environment variable -> (the folder inside it the task reads, the name the task looks for)
    "HEMABENCH_ACEVEDO_FULL": ("", "PBC_dataset_normal_DIB"),
    "HEMABENCH_PBC": ("labeled", "PBC_dataset_normal_DIB"),  # after the complete copy: used only without it
    "HEMABENCH_BCCD": ("BCCD_cropped", "BCCD_cropped"),
    "HEMABENCH_SEGMENTATION_WBC": ("", "segmentation_WBC"),
    "HEMABENCH_CHULA": ("", "Chula-RBC-12-Dataset"),
}
REPORTED = {"HEMABENCH_PBC": "the shared Acevedo subset (pbc/labeled)"}  # the report's name where not the folder's
STEP = re.compile(r"^suite \[(\d+)/(\d+), ([\d.]+) min\]: (\S+) on (\S+) \((.*)\)$")


def data_home(where: Path) -> list[str]:
    """Links to the copies named by the environment; the names of those found."""
    found = []
    for variable, (inside, name) in COPIES.items():
        source = os.environ.get(variable)
        if source and (Path(source) / inside).exists() and not (where / name).exists():
            (where / name).symlink_to(Path(source).resolve() / inside)
            found.append(REPORTED.get(variable, name))
    if not found:
        sys.path.insert(0, str(REPO_ROOT))
        from tests.test_suite import _data_home

        _data_home(where)
        found.append("generated copies of bccd-wbc, sslseg-1, sslseg-2")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-e", "--extractor", action="append", required=True)
    parser.add_argument("-t", "--task", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--log", type=Path, default=None, help="write the command's whole output here")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the feature cache and results in this folder and resume from them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        where = args.keep.resolve() if args.keep else Path(tmp)
        resumed = args.keep is not None and any((where / "bench_home").glob("*"))  # a cache from earlier parts
        where.mkdir(parents=True, exist_ok=True)
        home, results = Path(tmp) / "data", where / "results"  # (features are cached by content, not by path)
        home.mkdir()
        copies = data_home(home)
        env = {**os.environ, "BENCH_HOME": str(where / "bench_home")}
        command = [sys.executable, "-m", "bench", "suite", "run", "--data-home", str(home), "--results", str(results),
                   "--no-progress", *[x for e in args.extractor for x in ("-e", e)],
                   *[x for t in args.task for x in ("-t", t)]]
        t0 = time.perf_counter()
        output = []  # the command's lines, stdout and stderr as they came
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=REPO_ROOT) as process, \
                open(where / "log.txt", "a") if args.keep else open(os.devnull, "w") as stamped:
            stamped.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(command[3:])}\n")
            for line in process.stdout or []:
                output.append(line)
                stamped.write(f"{time.strftime('%H:%M:%S')} {line}")
                stamped.flush()
            returncode = process.wait()
            stamped.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} end: exit code {returncode}\n")
        total = time.perf_counter() - t0
        log = "".join(output)
        if args.log:
            args.log.write_text(log)
        steps = [m.groups() for m in map(STEP.match, log.splitlines()) if m]
        summaries = {e: json.loads(p.read_text()) for e in args.extractor
                     if (p := results / e / "suite.summary.json").exists()}
    cache = ("fresh feature cache" if args.keep is None else f"feature cache and results kept in {args.keep}, "
             + ("resumed from earlier parts (this part's time only)" if resumed else "started empty (one whole run)"))
    lines = [f"# `bench suite run` on {', '.join(copies)}", "",
             f"Command: `bench suite run {' '.join(f'-e {e}' for e in args.extractor)}"
             f"{''.join(f' -t {t}' for t in args.task)}` (exit code {returncode}), "
             f"{cache}. "
             f"Wall time: {total / 60:.1f} min.", "",
             "| # | extractor | evaluation | protocols | minutes |", "|---|---|---|---|---|"]
    starts = [float(s[2]) for s in steps] + [total / 60]
    for (number, _, _, extractor, task, protocols), begin, end in zip(steps, starts, starts[1:]):
        lines.append(f"| {number} | {extractor} | `{task}` | {protocols} | {end - begin:.2f} |")
    for extractor, summary in summaries.items():
        lines += ["", f"## {extractor}: main scores (percent), mean rank {summary.get('mean_rank')}", "",
                  "| task | protocol | metric | mean |", "|---|---|---|---|"]
        for task, by_protocol in sorted(summary["results"].items()):
            for protocol, score in sorted(by_protocol.items()):
                value = "—" if score["mean"] is None else f"{100 * score['mean']:.1f}"
                lines.append(f"| `{task}` | {protocol} | {score['metric']} | {value} |")
    failures = [line for line in log.splitlines() if line.startswith(("failed:", "absent, skipped:", "error:"))]
    if failures:
        lines += ["", "Not run:", ""] + [f"- {line[:300]}" for line in failures]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
