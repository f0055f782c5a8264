"""Extraction throughput of the harness against a bare loop, on synthetic PNGs and (when present) real PBC JPEGs.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_extraction.py [--quick] [--out report.md]

The harness path is ``bench.extract.cached_features`` into an empty cache (decoding, transform, DataLoader,
model, shard writing and finalising); the bare loop is ``model(x)`` over pre-decoded, pre-transformed batches of
the same images, same model, batch size and torch threads. Decode and transform are timed apart, and
synthetic-data generation is excluded.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from measure import PBC_DEFAULT, CpuMeter, copy_pbc_subset, log, md_table, parser, run_benchmark, wait_quiet


def measure_dataset(label: str, paths: list[Path], content: str, entry, model, fingerprint, *, batch_size: int,
                    repeats: int, workers: list[int], scratch: Path) -> dict:
    import numpy as np
    import torch

    from bench.core.images import decode_rgb
    from bench.extract import ExtractionSettings, cached_features

    transform = entry.transform()
    n = len(paths)
    sizes = set()

    # decode and transform, timed separately (main process, torch's default threads), best of `repeats`
    decode_s, transform_s = float("inf"), float("inf")
    tensors = []
    for _ in range(repeats):
        wait_quiet()
        images, t0 = [], time.perf_counter()
        for p in paths:
            images.append(decode_rgb(p))  # what ImageFiles does: the whole file, by the one decoding rule
        t1 = time.perf_counter()
        tensors = [transform(im) for im in images]
        t2 = time.perf_counter()
        sizes.update(im.size for im in images)
        decode_s, transform_s = min(decode_s, t1 - t0), min(transform_s, t2 - t1)
        del images
    batches = [torch.stack(tensors[i : i + batch_size]) for i in range(0, n, batch_size)]
    del tensors

    def bare_pass():
        outs = []
        wait_quiet()
        with CpuMeter() as meter, torch.inference_mode():
            for x in batches:
                outs.append(model(x))
        return {"wall_s": meter.wall, "foreign_cpu_s": meter.foreign}, torch.cat(outs).float().numpy()

    def harness_pass(nw: int, r: int, reference):
        cache_root = scratch / f"cache-{label}-nw{nw}-r{r}"
        wait_quiet()
        with CpuMeter() as meter:
            settings = ExtractionSettings(cache_root, batch_size=batch_size, num_workers=nw, device="cpu", progress=False)
            cached, stats = cached_features(entry, model, fingerprint, paths, content, settings)
        assert not stats.cached and stats.rows_extracted == n, stats
        diff = float(np.abs(np.asarray(cached.features) - reference).max())
        del cached
        shutil.rmtree(cache_root, ignore_errors=True)
        return {"wall_s": meter.wall, "loop_s": stats.seconds, "foreign_cpu_s": meter.foreign,
                "max_abs_diff_vs_bare": diff}

    # repeats interleaved (bare, nw=0, nw=1, bare, ...), so that a slow phase of the machine hits all paths;
    # each path keeps its best repeat
    bare, harness, reference = None, {}, None
    for r in range(repeats):
        with torch.inference_mode():
            model(batches[0])  # warm-up (one batch)
        result, out = bare_pass()
        reference = out if reference is None else reference
        if bare is None or result["wall_s"] < bare["wall_s"]:
            bare = result
        for nw in workers:
            with torch.inference_mode():
                model(batches[0])  # warm-up (one batch), as for the bare loop
            result = harness_pass(nw, r, reference)
            if nw not in harness or result["wall_s"] < harness[nw]["wall_s"]:
                harness[nw] = result
    return {
        "label": label,
        "n": n,
        "image_sizes": sorted(sizes),
        "decode_ms": 1000 * decode_s / n,
        "transform_ms": 1000 * transform_s / n,
        "bare_s": bare["wall_s"],
        "bare_foreign_cpu_s": bare["foreign_cpu_s"],
        "harness": harness,
    }


def measure(args, home: Path, scratch: Path) -> dict:
    import torch

    from extractors import get_extractor
    from tasks import get_task

    out = {"datasets": []}
    t0 = time.perf_counter()
    syn = get_task("synthetic-wbc").load(None, data_home=home / "data")
    out["synthetic_generation_s"] = time.perf_counter() - t0
    datasets = [("synthetic-wbc (PNG)", syn)]
    pbc_src = Path(args.pbc_root)
    out["pbc_root"] = str(pbc_src)
    out["pbc_found"] = pbc_src.is_dir()
    if pbc_src.is_dir():
        dst = copy_pbc_subset(pbc_src, scratch / "pbc-subset", args.pbc_per_class)
        datasets.append(("PBC subset (JPEG)", get_task(f"imagefolder:{dst}").load(None, data_home=home / "data")))

    entry = get_extractor(args.extractor)
    t0 = time.perf_counter()
    model = entry.build()
    out["build_s"] = time.perf_counter() - t0
    fingerprint = entry.fingerprint(model)
    out["threads"] = torch.get_num_threads()
    for label, ds in datasets:
        paths = ds.absolute_paths()
        content = ds.content_fingerprint()
        if args.images_limit:
            paths = paths[: args.images_limit]
            content = f"first-{len(paths)}-of-{content}"
        log(f"{label}, {len(paths)} images")
        out["datasets"].append(
            measure_dataset(label, paths, content, entry, model, fingerprint, batch_size=args.batch_size,
                            repeats=args.repeats, workers=[0, 1], scratch=scratch)
        )
    return out


def report(p1: dict, args) -> str:
    lines = [
        "## Extraction throughput: harness vs bare loop",
        "",
        f"Model `{args.extractor}`, batch size {args.batch_size}, torch threads {p1['threads']}, device cpu, "
        f"fp32; best of {args.repeats} after a one-batch warm-up. Synthetic data generation "
        f"({p1['synthetic_generation_s']:.1f} s) and model build ({p1['build_s']:.2f} s) are not included.",
        "",
    ]
    if not p1["pbc_found"]:
        lines += [f"Real images: `{p1['pbc_root']}` not found, PBC rows omitted.", ""]
    rows, where = [], []
    for d in p1["datasets"]:
        n = d["n"]
        bare_ips = n / d["bare_s"]
        sizes = ", ".join(f"{w}x{h}" for w, h in d["image_sizes"][:3]) + (" ..." if len(d["image_sizes"]) > 3 else "")
        rows.append([d["label"], n, sizes, "bare loop", f"{d['bare_s']:.2f}", f"{bare_ips:.2f}", "1.000", "", "",
                     f"{d['bare_foreign_cpu_s']:.1f}"])
        for nw, h in d["harness"].items():
            ips = n / h["wall_s"]
            rows.append([d["label"], n, sizes, f"harness, num_workers={nw}", f"{h['wall_s']:.2f}", f"{ips:.2f}",
                         f"{ips / bare_ips:.3f}", f"{n / h['loop_s']:.2f}", f"{h['max_abs_diff_vs_bare']:.1e}",
                         f"{h['foreign_cpu_s']:.1f}"])
        model_ms = 1000 * d["bare_s"] / n
        prep_ms = d["decode_ms"] + d["transform_ms"]
        where.append([d["label"], f"{d['decode_ms']:.2f}", f"{d['transform_ms']:.2f}", f"{model_ms:.1f}",
                      f"{100 * prep_ms / model_ms:.1f}%",
                      f"{1000 * d['harness'][0]['wall_s'] / n - model_ms:.2f}",
                      f"{1000 * d['harness'][1]['wall_s'] / n - model_ms:.2f}"])
    lines.append(md_table(["data", "images", "size (WxH)", "path", "seconds", "img/s", "harness/bare",
                         "img/s (loop only)", "max abs diff vs bare", "other processes' CPU s"], rows))
    lines += [
        "",
        "`seconds`/`img/s`: wall time of the whole `cached_features(...)` call (bare loop: the `model(x)` loop only). "
        "`img/s (loop only)`: the extraction loop's own timer (`ExtractionStats.seconds`: DataLoader + model + shard "
        "writes, without setting up the dataset, finalising the entry and loading it). `max abs diff vs bare`: the "
        "harness features against the bare loop's (same images, same model). `other processes' CPU s`: CPU time "
        "used by processes outside this benchmark during that (best) repeat (/proc/stat busy time minus the "
        "benchmark's own and its workers'); non-zero means the timing shared the CPUs with something else. The "
        "three paths run interleaved (bare, nw=0, nw=1, then again) and each keeps its fastest repeat.",
        "",
        "Where the time goes (per image, milliseconds; decode = `bench.core.images.decode_rgb` (for these 8-bit files `Image.open` + `convert('RGB')`), transform = the "
        "entry's resize + to-tensor + normalise, both single-process in the main process):",
        "",
        md_table(["data", "decode ms", "transform ms", "model ms (bare)", "decode+transform / model",
                "harness - bare ms, nw=0", "harness - bare ms, nw=1"], where),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--extractor", default="vit-s14-random")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--pbc-root", default=str(PBC_DEFAULT), help="real images <root>/<class>/<image> (optional)")
    p.add_argument("--pbc-per-class", type=int, default=32)
    p.add_argument("--images-limit", type=int, default=0, help="use only the first N images of each data set")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.images_limit, args.pbc_per_class = 1, args.images_limit or 64, min(args.pbc_per_class, 8)
    return run_benchmark(args, "hemabench extraction throughput", "bench_extraction.py",
                         lambda home, scratch: [report(measure(args, home, scratch), args)])


if __name__ == "__main__":
    sys.exit(main())
