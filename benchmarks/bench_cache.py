"""What the feature cache's checksums cost: writing shards (hashed), assembling ``features.npy`` (hashed on the
way), and a verified load (size + shape + sha256) against a size-and-shape-only check and an unchecked
``np.load``, at the row counts of the paper's tasks and ViT-g's 1,536 dims (random float32 features: the cost
does not depend on the values).

    python benchmarks/bench_cache.py [--quick] [--out report.md] [--dim D] [--rows N N ...]
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from measure import CpuMeter, fmt, log, md_table, parser, run_benchmark, wait_quiet

ROWS = {"acevedo (17,092)": 17_092, "bmc train split (137,085)": 137_085}


def measure_rows(scratch: Path, n_rows: int, dim: int, repeats: int) -> list:
    import numpy as np

    from bench.cache import FeatureStore

    root = scratch / f"cache-{n_rows}"
    store = FeatureStore(root, "k" * 64)
    features = np.random.default_rng(0).standard_normal((n_rows, dim), dtype=np.float32)
    wait_quiet()
    with CpuMeter() as write:
        for start in range(0, n_rows, 1024):
            store.write_shard(start, features[start : start + 1024], [])
    with CpuMeter() as assemble:
        store.finalise(n_rows, dim, {})
    timings = {"verified": [], "size+shape": [], "unchecked": []}
    for _ in range(repeats):  # warm page cache: the case of every run after the first
        wait_quiet()
        t0 = time.perf_counter()
        loaded = store.load()
        timings["verified"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.check(full=False)
        timings["size+shape"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.load(store.features_path, mmap_mode="r")
        timings["unchecked"].append(time.perf_counter() - t0)
    assert np.array_equal(np.asarray(loaded.features), features)
    size = store.features_path.stat().st_size
    shutil.rmtree(root)
    best = {k: min(v) for k, v in timings.items()}
    return [f"{n_rows:,} x {dim}", f"{size / 2**20:,.0f}", fmt(write.wall, 2), fmt(assemble.wall, 2),
            fmt(best["verified"], 3), fmt(best["size+shape"], 4), fmt(best["unchecked"], 4),
            fmt(write.foreign + assemble.foreign, 1)]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--rows", type=int, nargs="*", help="row counts (default: Acevedo's and BMC's training split)")
    args = p.parse_args()
    rows = args.rows or ([2_000] if args.quick else list(ROWS.values()))

    def measure(home: Path, scratch: Path) -> list[str]:
        table = []
        for n in rows:
            log(f"cache: {n} x {args.dim}")
            table.append(measure_rows(scratch, n, args.dim, 1 if args.quick else 3))
        header = ["rows x dim", "features.npy MiB", "write shards s", "assemble s", "verified load s",
                  "size+shape check s", "unchecked np.load s", "other processes' CPU s (writes)"]
        return ["## Feature cache: the cost of checksums", md_table(header, table),
                "`verified load` = `FeatureStore.load()` (size, shape and sha256 of features.npy against the "
                "manifest, then a memory map), best of the repeats, warm page cache; `unchecked np.load` = the "
                "memory map alone, as before checksums. Writing includes hashing each shard and the assembled file."]

    return run_benchmark(args, "hemabench feature cache benchmark", "bench_cache.py", measure)


if __name__ == "__main__":
    raise SystemExit(main())
