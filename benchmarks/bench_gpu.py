"""Issue 12's rows on one GPU: harness against bare loop, model build, kNN at BMC size, trainer pipeline.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_gpu.py [--images DIR] [--out report.md] [--quick]

One prepared script for a lent H100/H200 (no network; under 6 minutes there): it writes random-valued
checkpoints in the published DinoBloom format (the key names and shapes of tests/data/checkpoint_keys.json),
takes 2,000 PBC JPEGs from ``--images`` (default ../shared/data/pbc/labeled; generated 360x363 JPEGs when absent)
and prints one Markdown table per part:

1. extraction: ``bench.runner`` (build + cache + extraction, as ``bench run`` does) against a bare loop over the
   same model (bf16 autocast, batch 128, input tensors already on the GPU); img/s, their ratio, the seconds before
   extraction starts (model build and load, fingerprint, listing and hashing the images),
   peak GPU memory; dinobloom-g with the defaults and with batch 256, dinobloom-s with batch 512 and 14 workers,
   decoded on the CPU (PIL) and on the GPU (nvJPEG);
2. kNN-20 at BMC size (137,374 x 34,266 x 1,536, clustered random float32 features): the device path's seconds
   and rows that fell back, and its predictions against the CPU path on 1,000 test rows (must agree 100 %);
3. the paper's linear probe at BMC size (float64, C = dim x classes / 100, max_iter 1000) through scikit-learn's
   array-API path on the GPU: seconds, iterations, whether it converged; and on a 20,000-row training subset the
   device fit's predictions against the CPU (numpy) fit's (must agree 100 % when both converge);
4. the trainer, preset ``s`` at global batch 152, colour augmentations in the workers (PIL) and on the GPU
   (``augment_on=gpu``): the real pipeline against on-device batches (``benchmarks/bench_train.py``).

``--quick`` runs every part at toy sizes (dinobloom-s, 64 images, a small kNN), so the script itself can be
checked on a CPU; its numbers then mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import PBC_DEFAULT, emit_report, machine_info, write_dinobloom  # noqa: E402

from bench.core.settings import use_scipy_array_api  # noqa: E402

use_scipy_array_api()  # before anything imports scipy: the linear probe's GPU path needs it


def image_folder(source: Path, dest: Path, n: int) -> Path:
    """``n`` JPEGs in class folders: the first files of ``source``'s classes, else generated ones."""
    import shutil

    import numpy as np
    from PIL import Image

    if source.is_dir():
        classes = sorted(p for p in source.iterdir() if p.is_dir())
        per_class = -(-n // len(classes))
        for cls in classes:
            (dest / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.glob("*.jpg"))[:per_class]:
                shutil.copy2(f, dest / cls.name / f.name)
        return dest
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = dest / f"class{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(rng.normal(128 + 10 * (i % 8), 40, (363, 360, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return dest


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> str:
    import torch

    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if torch.cuda.is_available() else "n/a"


def bare_loop(model, images: Path, n: int, batch: int, device) -> float:
    """img/s of ``model(x)`` in bf16 autocast over pre-decoded batches already on the device."""
    import torch

    from bench.core.images import decode_rgb
    from extractors import get_extractor

    transform = get_extractor("dinobloom-s").transform()
    files = sorted(images.rglob("*.jpg"))[:batch]
    x = torch.stack([transform(decode_rgb(f)) for f in files]).to(device)
    x = x.repeat(-(-batch // len(x)), 1, 1, 1)[:batch]
    model = model.to(device)
    steps = max(1, n // batch)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model(x)
        _sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        _sync()
    return steps * batch / (time.perf_counter() - t0)


def extraction_rows(folder: Path, files: dict, device, n: int, quick: bool) -> list[str]:
    import torch

    from bench.runner import RunOptions, load_pair

    runs = [("dinobloom-g", {}, "defaults"), ("dinobloom-g", {"batch_size": 256}, "batch 256"),
            ("dinobloom-s", {"batch_size": 512, "num_workers": 14, "decode": "cpu"}, "batch 512, 14 workers, PIL"),
            ("dinobloom-s", {"batch_size": 512, "num_workers": 14, "decode": "gpu"}, "batch 512, 14 workers, nvJPEG")]
    if quick:
        runs = [("dinobloom-s", {"batch_size": 16, "num_workers": 0}, "quick")]
    rows = ["| extractor | settings | precision | build + data s | wall s | harness img/s | bare img/s | ratio | "
            "peak GPU GiB |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    bare = {}
    with tempfile.TemporaryDirectory() as cache:
        for i, (name, settings, label) in enumerate(runs):
            if device.type != "cuda" and settings.get("decode") == "gpu":
                continue
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            options = RunOptions(weights=files[name], progress=False, cache_root=Path(cache) / str(i), **settings)
            t0 = time.perf_counter()
            pair = load_pair(name, f"imagefolder:{folder}", options, log=lambda m: None)
            wall = time.perf_counter() - t0
            harness = pair.stats.images_per_second or 0.0
            if name not in bare:
                bare[name] = bare_loop(pair.extractor.model, folder, n, 128 if not quick else 16, device)
            build = wall - pair.stats.seconds
            rows.append(f"| {name} | {label} | {pair.extractor.entry.precision} | {build:.1f} | {wall:.1f} | "
                        f"{harness:.0f} | {bare[name]:.0f} | {harness / bare[name]:.2f} | {_peak_gib()} |")
            print(rows[-1], flush=True)
            del pair
    return rows


def knn_rows(device, quick: bool) -> list[str]:
    import numpy as np

    from protocols.knn import knn_scores
    from protocols.knn_device import DeviceKNNStats, knn_scores_device

    n_train, n_test, dim, n_classes = (137_374, 34_266, 1_536, 21) if not quick else (2_000, 500, 64, 5)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(n_classes, dim)).astype(np.float32)
    y_train, y_test = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_test)
    x_train = centers[y_train] + rng.normal(scale=3.0, size=(n_train, dim)).astype(np.float32)
    x_test = centers[y_test] + rng.normal(scale=3.0, size=(n_test, dim)).astype(np.float32)
    stats = DeviceKNNStats()
    t0 = time.perf_counter()
    scores = knn_scores_device(x_train, y_train, x_test, n_classes, 20, sklearn_ties=True, device=device, stats=stats)
    seconds = time.perf_counter() - t0
    check = slice(0, min(1000, n_test))
    t0 = time.perf_counter()
    cpu = knn_scores(x_train, y_train, x_test[check], n_classes, 20, sklearn_ties=True)
    cpu_seconds = time.perf_counter() - t0
    agree = float(np.mean(scores[check].argmax(1) == cpu.argmax(1)))
    rows = ["| train x test x dim | device s | rows on the exact CPU path | CPU path s (1,000 rows) | "
            "predictions agreeing with the CPU path | peak GPU GiB |", "|---|---:|---:|---:|---:|---:|"]
    rows.append(f"| {n_train:,} x {n_test:,} x {dim:,} | {seconds:.1f} | {stats.n_fallback} | {cpu_seconds:.1f} | "
                f"{100 * agree:.2f} % | {_peak_gib()} |")
    print(rows[-1], flush=True)
    return rows


def linear_rows(device, quick: bool) -> list[str]:
    import numpy as np
    import torch

    from protocols.linear import _fit, fit_predict_on_device, paper_c, scipy_array_api_enabled

    if not scipy_array_api_enabled():
        return ["scikit-learn's array-API path is off (SCIPY_ARRAY_API=1 must be set before scipy's first import)"]
    n_train, n_test, dim, n_classes = (137_374, 34_266, 1_536, 21) if not quick else (2_000, 500, 64, 5)
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(n_classes, dim))
    y_train, y_test = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_test)
    x_train = centers[y_train] + rng.normal(scale=3.0, size=(n_train, dim))
    x_test = centers[y_test] + rng.normal(scale=3.0, size=(n_test, dim))
    c = paper_c(dim, y_train)
    rows = ["| train x test x dim | where | seconds | converged | predictions agreeing with the CPU fit | "
            "peak GPU GiB |", "|---|---|---:|---|---:|---:|"]
    t0 = time.perf_counter()
    _, _, converged = fit_predict_on_device(x_train, y_train, x_test, c, 1000, str(device))
    rows.append(f"| {n_train:,} x {n_test:,} x {dim:,} | {device} | {time.perf_counter() - t0:.1f} | {converged} | "
                f"- | {_peak_gib()} |")
    print(rows[-1], flush=True)
    sub = slice(0, min(20_000, n_train))
    t0 = time.perf_counter()
    labels, _, converged = fit_predict_on_device(x_train[sub], y_train[sub], x_test, c, 1000, str(device))
    device_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, cpu_converged = _fit(x_train[sub], y_train[sub], c, 1000)
    cpu_s = time.perf_counter() - t0
    agree = float(np.mean(labels == model.predict(x_test)))
    rows.append(f"| {sub.stop:,} x {n_test:,} x {dim:,} | {device} / CPU | {device_s:.1f} / {cpu_s:.1f} | "
                f"{converged} / {cpu_converged} | {100 * agree:.3f} % | {_peak_gib()} |")
    print(rows[-1], flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def trainer_rows(quick: bool) -> list[str]:
    import bench_train

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train.md"
        argv = ["--presets", "tiny-cpu", "--steps", "1"] if quick else ["--presets", "s", "--batch", "152",
                                                                         "--steps", "5"]
        argv += ["--augment-on", "cpu,gpu"]
        bench_train.main(argv + ["--out", str(out)])
        return [line for line in out.read_text().splitlines() if line.startswith("|")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=PBC_DEFAULT)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="toy sizes, to check the script on a CPU")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = 64 if args.quick else args.n_images
    info = machine_info()
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "no GPU"
    lines = ["# benchmarks/bench_gpu.py", "", f"{gpu}; {info['cpu']}, {info['cpus_usable']} usable CPUs; torch "
             f"{info['torch']}; {'QUICK (toy sizes: the numbers mean nothing)' if args.quick else 'full sizes'}", ""]
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = image_folder(args.images, tmp / "images", n)
        sizes = "s" if args.quick else "sg"
        files = {f"dinobloom-{s}": write_dinobloom(s, tmp / f"DinoBloom-{s.upper()}.pth") for s in sizes}
        lines += ["## Extraction", "", f"{n} images from {args.images if args.images.is_dir() else 'generated JPEGs'}",
                  "", *extraction_rows(folder, files, device, n, args.quick), ""]
    lines += ["## kNN-20", "", *knn_rows(device, args.quick), ""]
    lines += ["## Linear probe", "", *linear_rows(device, args.quick), ""]
    lines += ["## Trainer", "", *trainer_rows(args.quick), ""]
    lines.append(f"Total {time.perf_counter() - t_start:.0f} s.")
    return emit_report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
