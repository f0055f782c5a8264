"""Block masking for the iBOT masked-patch loss (DINOv2's ``MaskingGenerator`` semantics, re-implemented).

The algorithm is BEiT's block-wise masking as DINOv2 ships it (``dinov2/data/masking.py``): to mask ``n`` patches of an
``H x W`` token grid, repeatedly place one rectangle until ``n`` patches are masked:

* one placement makes at most 10 attempts; an attempt draws a target area uniformly in
  ``[min_num_patches, min(remaining, max_num_patches)]`` and an aspect ratio log-uniformly in
  ``[min_aspect, max_aspect]`` (``max_aspect`` defaults to ``1 / min_aspect``), rounds ``h = sqrt(area * aspect)``,
  ``w = sqrt(area / aspect)``, and keeps it only if it is strictly smaller than the grid (``h < H`` and ``w < W``);
  its top-left corner is uniform over the valid positions;
* a rectangle is accepted when the number of patches it *newly* masks is in ``(0, remaining]`` (rectangles may
  overlap earlier ones; the masked count never overshoots);
* the placement loop stops when ``n`` patches are masked or a placement's 10 attempts all fail.

DINOv2 stops there, so it sometimes masks a few patches fewer than requested (measured on a 16 x 16 grid, requests
of 10-50 % with ``max_num_patches=128``: about 7.5 % of masks end 1-2 patches short). ``exact=True`` (the default here)
then tops the mask up one patch at a time with randomly chosen unmasked patches 4-adjacent to the mask (so the block
structure is kept and no new component appears), which gives exactly ``n`` masked patches whenever ``n <= H * W``.
``exact=False`` is DINOv2's behaviour. The random draws are made in the same order as DINOv2's (``uniform``,
``uniform``, ``randint``, ``randint`` per attempt), so passing the ``random`` module itself as ``rng`` after
``random.seed(s)`` gives the mask DINOv2 would give for the same seed when ``exact=False``.

DINOv2's trainer builds it as ``MaskingGenerator(input_size=(g, g), max_num_patches=0.5 * g * g)`` for a ``g x g``
grid (``g = 224 // 14 = 16`` for DinoBloom); ``max_num_patches=None`` here means "no cap per rectangle" (DINOv2's
``None`` means the constructor's ``num_masking_patches``, an argument that only matters for its ``__repr__``).
"""

from __future__ import annotations

import math
import random
from types import ModuleType

import numpy as np
import torch

__all__ = ["BlockMaskGenerator", "rng_from_torch"]

RandomLike = random.Random | ModuleType  # a random.Random instance or the `random` module itself


def rng_from_torch(generator: torch.Generator | None = None) -> random.Random:
    """A ``random.Random`` seeded from a torch generator (torch's global RNG when ``None``)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator).item())
    return random.Random(seed)


class BlockMaskGenerator:
    """Block-wise (BEiT/DINOv2) masks on an ``H x W`` patch grid; call with the number of patches to mask."""

    def __init__(
        self,
        input_size: int | tuple[int, int] = (16, 16),
        max_num_patches: float | None = None,
        min_num_patches: float = 4,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        exact: bool = True,
    ) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.height, self.width = (int(v) for v in input_size)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if min_aspect <= 0:
            raise ValueError(f"min_aspect must be > 0, got {min_aspect}")
        self.num_patches = self.height * self.width
        self.min_num_patches = min_num_patches
        self.max_num_patches = self.num_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.exact = exact

    @property
    def input_size(self) -> tuple[int, int]:
        return self.height, self.width

    def __repr__(self) -> str:
        return (
            f"BlockMaskGenerator(input_size=({self.height}, {self.width}), max_num_patches={self.max_num_patches}, "
            f"min_num_patches={self.min_num_patches}, aspect=({math.exp(self.log_aspect_ratio[0]):.3g}, "
            f"{math.exp(self.log_aspect_ratio[1]):.3g}), exact={self.exact})"
        )

    def _place_block(self, mask: np.ndarray, max_mask_patches: float, rng: RandomLike) -> int:
        """One placement (at most 10 attempts); returns the number of newly masked patches (0 = failed)."""
        for _ in range(10):
            target_area = rng.uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(rng.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = rng.randint(0, self.height - h)
                left = rng.randint(0, self.width - w)
                window = mask[top : top + h, left : left + w]
                new = h * w - int(window.sum())
                if 0 < new <= max_mask_patches:
                    window[...] = True
                    return new
        return 0

    def _top_up(self, mask: np.ndarray, missing: int, rng: RandomLike) -> None:
        """Mask ``missing`` more patches, each 4-adjacent to the mask (any patch when the mask is empty)."""
        for _ in range(missing):
            grown = np.zeros_like(mask)
            grown[1:, :] |= mask[:-1, :]
            grown[:-1, :] |= mask[1:, :]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            candidates = np.flatnonzero(grown & ~mask)
            if candidates.size == 0:  # empty mask (or nothing adjacent left): any unmasked patch
                candidates = np.flatnonzero(~mask)
            mask.flat[candidates[rng.randrange(candidates.size)]] = True

    def __call__(self, num_masking_patches: int = 0, rng: RandomLike | None = None) -> np.ndarray:
        """A bool array ``(H, W)``; ``rng`` is a ``random.Random`` (or the ``random`` module); ``None`` draws a
        seed from torch's global RNG (which DataLoader seeds per worker)."""
        num_masking_patches = int(num_masking_patches)
        if not 0 <= num_masking_patches <= self.num_patches:
            raise ValueError(
                f"cannot mask {num_masking_patches} patches of a {self.height}x{self.width} grid "
                f"({self.num_patches} patches)"
            )
        if rng is None:
            rng = rng_from_torch()
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < num_masking_patches:
            max_mask_patches = min(num_masking_patches - count, self.max_num_patches)
            delta = self._place_block(mask, max_mask_patches, rng)
            if delta == 0:
                break
            count += delta
        if self.exact and count < num_masking_patches:
            self._top_up(mask, num_masking_patches - count, rng)
        return mask
