"""``bench check-extractor``: does an entry keep its contract on a tiny synthetic batch?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def check_extractor(entry, model, batch: int = 4, seed: int = 0) -> list[Check]:
    """Output shape = (N, dim), finite values, batch-size invariance, determinism."""
    import torch
    from PIL import Image

    rng = np.random.default_rng(seed)
    transform = entry.transform()
    images = [Image.fromarray(rng.integers(0, 256, (96, 112, 3), dtype=np.uint8)) for _ in range(batch)]
    x = torch.stack([transform(image) for image in images])
    checks = []
    with torch.inference_mode():
        out = model(x).float()
        checks.append(Check("shape", tuple(out.shape) == (batch, entry.dim), f"{tuple(out.shape)}, expected ({batch}, {entry.dim})"))
        finite = bool(torch.isfinite(out).all())
        checks.append(Check("finite", finite, "all values finite" if finite else "NaN or inf in the output"))
        singles = torch.cat([model(x[i : i + 1]).float() for i in range(batch)])
        scale = float(out.abs().max()) or 1.0
        gap = float((singles - out).abs().max()) if singles.shape == out.shape else float("inf")
        checks.append(Check("batch invariance", gap <= 1e-4 * scale + 1e-6, f"max |batch - single| = {gap:.3g} (scale {scale:.3g})"))
        again = model(x).float()
        same = float((again - out).abs().max()) if again.shape == out.shape else float("inf")
        checks.append(Check("deterministic", same == 0.0, f"max |run1 - run2| = {same:.3g}"))
    return checks
