"""``bench check-extractor``: does an entry keep its contract on a tiny synthetic batch?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


# how far one image's features may move between a batch of 4 and a batch of 1 (relative to the largest
# |feature|): kernels pick other blockings per batch size, and low precisions round those differences coarsely
BATCH_TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


def check_extractor(entry, model, batch: int = 4, seed: int = 0, device=None) -> list[Check]:
    """Output shape = (N, dim), finite values, batch-size invariance, determinism, in the entry's (resolved)
    precision on ``device`` (default: the CPU)."""
    import torch
    from PIL import Image

    from bench.precision import forward_precision, resolve_precision

    device = torch.device("cpu") if device is None else device
    precision = resolve_precision(entry.precision, device)
    model = model.to(device)

    rng = np.random.default_rng(seed)
    transform = entry.transform()
    images = [Image.fromarray(rng.integers(0, 256, (96, 112, 3), dtype=np.uint8)) for _ in range(batch)]
    x = torch.stack([transform(image) for image in images]).to(device)
    checks = []
    with torch.inference_mode(), forward_precision(precision, device):
        out = model(x).float()
        checks.append(Check("shape", tuple(out.shape) == (batch, entry.dim), f"{tuple(out.shape)}, expected ({batch}, {entry.dim})"))
        finite = bool(torch.isfinite(out).all())
        checks.append(Check("finite", finite, "all values finite" if finite else "NaN or inf in the output"))
        singles = torch.cat([model(x[i : i + 1]).float() for i in range(batch)])
        scale = float(out.abs().max()) or 1.0
        gap = float((singles - out).abs().max()) if singles.shape == out.shape else float("inf")
        tolerance = BATCH_TOLERANCE[precision]
        checks.append(Check("batch invariance", gap <= tolerance * scale + 1e-6,
                            f"max |batch - single| = {gap:.3g} (scale {scale:.3g}, {precision} allows {tolerance:g})"))
        again = model(x).float()
        same = float((again - out).abs().max()) if again.shape == out.shape else float("inf")
        checks.append(Check("deterministic", same == 0.0, f"max |run1 - run2| = {same:.3g}"))
    return checks
