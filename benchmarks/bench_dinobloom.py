"""`dinobloom-s` through the harness against a bare timm ViT-S/14 forward at 224 px.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_dinobloom.py [--repeats 3] [--out report.md]

The DinoBloom-S weights cannot be downloaded here, so the script writes a file in the published format
(``{"teacher": {...}}`` with the key names and shapes of ../shared/design/checkpoint_keys.json, random values):
speed does not depend on the values. Harness: ``bench.extract.cached_features`` into an empty cache (decode,
resize, normalise, DataLoader, model, shard writes, finalise). Bare: ``timm.create_model(
"vit_small_patch14_dinov2", img_size=224, num_classes=0)`` holding the same tensors, ``model(x)`` over
pre-decoded, pre-transformed batches of the same images. Same batch size and torch threads; repeats interleaved
(bare, harness, bare, ...), each after a one-batch warm-up and a wait for the machine to be quiet.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import KEYS, PBC_DEFAULT, CpuMeter, copy_pbc_subset, machine_info, wait_quiet, write_dinobloom  # noqa: E402,E501


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=32, help="PBC images per class (8 classes)")
    parser.add_argument("--num-workers", type=int, default=None, help="harness DataLoader workers (default: auto)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import numpy as np
    import timm
    import torch

    from bench.core.images import decode_rgb
    from bench.extract import ExtractionSettings, auto_workers, cached_features
    from extractors import get_extractor
    from tasks import get_task

    if not KEYS.is_file() or not PBC_DEFAULT.is_dir():
        print(f"needs {KEYS} and {PBC_DEFAULT}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="bench-dinobloom-"))
    try:
        weights = write_dinobloom("s", scratch / "DinoBloom-S.pth")
        entry = get_extractor("dinobloom-s")
        model = entry.build(weights=weights)
        fingerprint = entry.fingerprint(model, weights)
        bare = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0).eval()
        bare.load_state_dict(model.backbone.state_dict())
        data = get_task(f"imagefolder:{copy_pbc_subset(PBC_DEFAULT, scratch / 'pbc', args.per_class)}").load(
            None, data_home=scratch
        )
        paths, content = data.absolute_paths(), data.content_fingerprint()
        transform = entry.transform()
        tensors = []
        for p in paths:
            tensors.append(transform(decode_rgb(p)))  # decoded as the harness decodes
        batches = [torch.stack(tensors[i : i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        workers = auto_workers(torch.device("cpu")) if args.num_workers is None else args.num_workers

        bare_s, harness_s, foreign = [], [], []
        reference = None
        for r in range(args.repeats):
            with torch.inference_mode():
                bare(batches[0])
            wait_quiet()
            with CpuMeter() as meter, torch.inference_mode():
                out = torch.cat([bare(x) for x in batches]).numpy()
            bare_s.append(meter.wall)
            foreign.append(meter.foreign)
            reference = out if reference is None else reference
            with torch.inference_mode():
                model(batches[0])
            wait_quiet()
            with CpuMeter() as meter:
                settings = ExtractionSettings(scratch / f"c{r}", batch_size=args.batch_size, num_workers=workers,
                                              device="cpu", progress=False)
                cached, stats = cached_features(entry, model, fingerprint, paths, content, settings)
            harness_s.append(meter.wall)
            foreign.append(meter.foreign)
            diff = float(np.abs(np.asarray(cached.features) - reference).max())
        n = len(paths)
        ratios = [b / h for b, h in zip(bare_s, harness_s)]
        info = machine_info()
        lines = [
            "## `dinobloom-s` through the harness vs a bare timm ViT-S/14",
            "",
            f"- Date: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}; command: "
            "`BENCH_HOME=$(mktemp -d) python benchmarks/bench_dinobloom.py`",
            f"- Machine: {info.get('cpu')}, {info.get('cpus_usable')} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads; device cpu, fp32",
            f"- Images: {n} real PBC JPEGs ({args.per_class} per class), batch {args.batch_size}, "
            f"harness num_workers {workers}; {args.repeats} interleaved repeats",
            f"- Features: harness vs bare max |difference| = {diff:.3g}; other processes' CPU s during the timed "
            f"passes: {max(foreign):.1f} at most",
            "",
            "| path | seconds per repeat | best img/s | median img/s |",
            "|---|---|---|---|",
            f"| bare `model(x)` | {', '.join(f'{s:.2f}' for s in bare_s)} | {n / min(bare_s):.2f} | "
            f"{n / statistics.median(bare_s):.2f} |",
            f"| harness | {', '.join(f'{s:.2f}' for s in harness_s)} | {n / min(harness_s):.2f} | "
            f"{n / statistics.median(harness_s):.2f} |",
            "",
            f"harness / bare img/s: median of the per-repeat ratios {statistics.median(ratios):.3f}, best vs best "
            f"{min(bare_s) / min(harness_s):.3f}.",
            "",
        ]
        report = "\n".join(lines)
        print(report)
        if args.out:
            args.out.write_text(report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"(total {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(code)
