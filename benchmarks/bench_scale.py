"""The same ``bench run`` with 1, 2 (and 4, where the machine has the cores or GPUs) torchrun processes: wall time,
extraction time and efficiency T1 / (N x TN); every run's features and results are compared with the 1-process
run's, byte for byte.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_scale.py [--quick] [--procs 1,2] [--images DIR]
        [--per-class 25] [--shard-size 32] [--extractors vit-s14-random] [--device cpu|cuda] [--out report.md]

Each run starts from an empty feature cache and results folder (its own BENCH_HOME) and is started with ``torchrun
--nproc-per-node N -m bench run -e ... -t imagefolder:IMAGES -p knn-20 --shard-size S`` (N = 1 too, so every run
pays the same launcher). The processes share shards, so S must leave several shards per process: the default 1,024
rows suits the real data sets, 32 (one CPU batch) suits the 200 images measured here. On CPU the cores are split:
OMP_NUM_THREADS = cores // N per process, so N processes never get more arithmetic than one; what N buys on one CPU
is only what one process leaves idle (its serial parts: decoding, the Python between batches, the file writes), and
most of the speed-up torchrun gives comes from more machines or GPUs. Wall time includes each process's start
(importing torch, building the model, hashing the data set), which N processes pay in parallel, not once. With
several ``--extractors`` the pairs are shared too: each rank owns (finalises and evaluates) every N-th pair and
helps extract the others. On CPU the thread count can change features in the last bits: oneDNN picks its convolution
kernels by thread count, so a ResNet batch with 2 threads and the same batch with 1 thread may differ by ~1e-5 (ViTs
measured identical); the comparison column says where this happens. At equal thread counts, and on GPUs, N processes
give the bytes of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from measure import PBC_DEFAULT, REPO_ROOT, copy_pbc_subset, log, md_table, parser, run_benchmark, wait_quiet


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def launch(n: int, extractors: list[str], images: Path, home: Path, device: str, shard_size: int) -> tuple[float, str]:
    """One ``bench run`` under torchrun with ``n`` processes; (wall seconds, its output)."""
    env = {**os.environ, "BENCH_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    if device == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, _cores() // n))
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-port", str(_port()),
            "-m", "bench", "run", "-t", f"imagefolder:{images}", "-p", "knn-20", "--results", str(home / "results"),
            "--device", device, "--shard-size", str(shard_size), "--no-progress"]
    for name in extractors:
        args += ["-e", name]
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{n} process(es) failed:\n{done.stderr[-4000:]}")
    return wall, done.stdout + done.stderr


def outputs(home: Path) -> tuple[dict, str, float]:
    """The features of every cache entry (by key), a sha256 over every result's metrics and predictions, and the
    extraction seconds the owners recorded (summed over pairs)."""
    import numpy as np

    features = {p.parent.name: np.load(p) for p in sorted((home / "cache" / "features").glob("*/features.npy"))}
    results, extraction = hashlib.sha256(), 0.0
    for path in sorted((home / "results").rglob("knn-20.json")):
        record = json.loads(path.read_text())
        results.update(json.dumps(record["metrics"], sort_keys=True).encode())
        results.update(path.with_name("knn-20.predictions.csv").read_bytes())
        extraction += record["timings"]["extraction_seconds"]
    return features, results.hexdigest(), extraction


def compare(features: dict, reference: dict) -> str:
    """"yes" when every entry is byte-identical to the reference's, else which rows differ and by how much."""
    if features.keys() != reference.keys():
        return "**other cache keys**"
    said = []
    for key, array in features.items():
        if array.tobytes() != reference[key].tobytes():
            rows = (array != reference[key]).any(axis=1).nonzero()[0]
            said.append(f"{len(rows)} rows of {key[:8]} (max abs diff {abs(array - reference[key]).max():.1e})")
    return "yes" if not said else "no: " + "; ".join(said)


def measure(args, home: Path, scratch: Path) -> list[str]:
    per_class = 4 if args.quick else args.per_class
    images = copy_pbc_subset(Path(args.images), scratch / "images", per_class)
    n_images = sum(1 for _ in images.rglob("*.jpg"))
    procs = [int(n) for n in args.procs.split(",")]
    extractors = args.extractors.split(",")
    rows, reference = [], None
    for n in procs:
        wait_quiet()
        run_home = scratch / f"home-{n}"
        log(f"{n} process(es): {', '.join(extractors)} on {n_images} images")
        wall, _ = launch(n, extractors, images, run_home, args.device, args.shard_size)
        features, results, extraction = outputs(run_home)
        if reference is None:
            reference = (wall, features, results)
        same = compare(features, reference[1]) + ("" if results == reference[2] else "; results differ")
        efficiency = reference[0] / (n * wall) if n > 1 else 1.0
        rows.append([n, f"{wall:.1f}", f"{extraction:.1f}", f"{n_images * len(extractors) / wall:.2f}",
                     f"{reference[0] / wall:.2f}", f"{efficiency:.2f}", same])
    threads = f"OMP_NUM_THREADS = {_cores()} // N" if args.device == "cpu" else "one GPU per process"
    return [
        f"{len(extractors)} extractor(s) ({', '.join(extractors)}) x {n_images} PBC images ({per_class} per class), "
        f"`-p knn-20 --shard-size {args.shard_size}`, device {args.device}, {threads}; every run from an empty cache.",
        "",
        md_table(["processes N", "wall s", "extraction s (owners, summed)", "images/s (wall)", "speed-up T1/TN",
                  "efficiency T1/(N TN)", "features, results identical to N=1"], rows),
    ]


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--procs", default="1,2", help="process counts to compare, comma-separated")
    p.add_argument("--images", default=str(PBC_DEFAULT), help="an image folder of class folders (PBC by default)")
    p.add_argument("--per-class", type=int, default=25, help="images per class copied from --images")
    p.add_argument("--shard-size", type=int, default=32, help="rows per cache shard (the unit the processes share)")
    p.add_argument("--extractors", default="vit-s14-random", help="extractor name(s), comma-separated")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    return run_benchmark(args, "Scaling with torchrun processes", "bench_scale.py",
                         lambda home, scratch: measure(args, home, scratch))


if __name__ == "__main__":
    sys.exit(main())
