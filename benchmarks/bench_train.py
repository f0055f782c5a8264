"""Trainer step time per preset on this machine (CUDA when present, else CPU), at a chosen batch.

    BENCH_HOME=$(mktemp -d) python benchmarks/bench_train.py [--presets tiny-cpu,s,b,l] [--batch 4] [--steps 3]

Each preset's real architecture and heads (65,536 prototypes for s/b/l), one process, images from the
synthetic-wbc task; the median time of ``--steps`` steps after one warm-up step, two ways: through the real
pipeline (DataLoader with ``--workers`` processes, default the trainer's own choice: decode, augment, collate,
copy), and on synthetic batches already on the device (one real batch moved there once and stepped on again:
model, losses and optimizer, and with ``--augment-on gpu`` the colour augmentations the step applies). The gap
between them is what the data pipeline costs. ``g`` is left out on a 24 GiB machine: student, teacher, gradients
and AdamW state of ViT-g alone are about 22 GB in fp32. The paper's per-GPU batch sizes need a GPU (see
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny-cpu,s,b,l")
    parser.add_argument("--batch", type=int, default=4, help="global batch for s/b/l (tiny-cpu keeps its own, 64)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: the trainer's default)")
    parser.add_argument("--augment-on", default="cpu", help="cpu, gpu or both (comma-separated): where the colour "
                        "augmentations run (--set augment_on=...)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    from dinobloom_train.config import get_preset
    from dinobloom_train.train import Trainer, init_distributed, loader_workers
    from tasks import get_task

    home = Path(tempfile.mkdtemp(prefix="bench-train-"))
    images = get_task("synthetic-wbc").load(None, data_home=home / "data").root
    lines = [
        f"## Trainer step time per preset ({'CUDA' if torch.cuda.is_available() else 'CPU'})",
        "",
        f"- Date: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}; command: "
        f"`python benchmarks/bench_train.py --presets {args.presets} --batch {args.batch} --steps {args.steps}`",
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads, synthetic-wbc images; "
        "fp32 on CPU, the preset's autocast precision on CUDA",
        "",
        "| preset | architecture | img px | global batch | workers | augment_on | s / step, pipeline "
        "| images / s, pipeline | s / step, on-device batches | images / s, on-device | peak CUDA memory GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    dist = init_distributed()  # CUDA when present (bf16 autocast by default), else CPU
    workers = loader_workers(args.workers, dist.device)
    runs = [(name, where) for name in args.presets.split(",") for where in args.augment_on.split(",")]
    for name, where in runs:
        preset = get_preset(name)
        batch = preset.global_batch if name == "tiny-cpu" else args.batch
        config = preset.override([f"global_batch={batch}", f"num_workers={workers}", f"max_steps={2 * args.steps + 2}",
                                  "warmup_iters=1", "export_every=100000", "checkpoint_every=100000",
                                  "log_every=100000", "freeze_last_layer_iters=0", "warmup_teacher_temp_iters=1",
                                  f"augment_on={where}"])
        if dist.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(config, images, home / f"run-{name}-{where}", dist, log=lambda m: None)
        trainer.export = lambda: None  # timing only: no iteration-0 export
        t0 = time.perf_counter()
        history = trainer.train(args.steps + 1)
        times = [history[0]["seconds"]] + [b["seconds"] - a["seconds"] for a, b in zip(history, history[1:])]
        step = statistics.median(times[1:])
        on_device = _on_device_step(trainer, args.steps, dist.device)
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if dist.device.type == "cuda" else "n/a (CPU)"
        lines.append(f"| {name} | {config.timm_name} {dict(config.arch_overrides) or ''} | {config.img_size} | "
                     f"{batch} | {workers} | {where} | {step:.2f} | {batch / step:.1f} | {on_device:.2f} | "
                     f"{batch / on_device:.1f} | {memory} |")
        print(lines[-1], f"(warm-up step {times[0]:.1f} s, total {time.perf_counter() - t0:.0f} s)", flush=True)
        del trainer
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def _on_device_step(trainer, steps: int, device) -> float:
    """Median seconds of ``steps`` steps on one real batch already on the device (after a warm-up step)."""
    import torch

    batch = next(trainer._batches())
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    times = []
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


if __name__ == "__main__":
    raise SystemExit(main())
