"""The colour half of DinoBloom's augmentation, run on the training device (``augment_on=gpu``).

Why: on an H200 the PIL augmentations in the DataLoader workers are the limit of the trainer (preset ``s`` at
batch 152: 768 img/s with 14 workers against a compute estimate of ~3,000). The geometric half (Lanczos resize,
random resized crop, flips, rotation) stays in the workers, exactly as on the CPU path; the colour half (jitter,
grayscale, blur, solarisation) and the normalisation run here, on the whole batch at once.

The split keeps a run reproducible: every random draw still happens in the worker, in the same order and with the
same torch calls as the torchvision transforms of the CPU path (``ColourDraw``), so the crops' geometry is the CPU
path's for the same seed. The draws travel with the uint8 crop as one small float tensor per crop (layout below);
the device step (``DeviceColour``) draws nothing, so a resumed run takes the same step as one that never stopped.

The arithmetic is torchvision's tensor kernels (``torchvision.transforms.v2.functional``), vectorised over the
batch. The CPU path applies the same operations to PIL images in 8 bits, so the two paths draw the same
parameters but give slightly different pixels (PIL rounds to 8 bits after each operation).

Parameter layout (``N_PARAMS`` float32 values per crop):

=========  =========================================================================================================
index      value
=========  =========================================================================================================
0          ``JITTER``: 1 when the colour jitter is applied to this crop (``RandomApply`` p ``jitter_p``)
1-4        ``FACTORS``: brightness, contrast, saturation and hue factors as ``ColorJitter.get_params`` draws them
           (identity values 1, 1, 1, 0 when the jitter is not applied)
5-8        ``ORDER``: the jitter's op order (``ColorJitter.get_params``' permutation, 0 brightness, 1 contrast,
           2 saturation, 3 hue); -1 in a slot whose op does not run (jitter not applied, or that factor switched off)
9          ``GRAYSCALE``: 1 when converted to grayscale (p ``grayscale_p``)
10         ``BLUR``: 1 when blurred (p ``blur_p`` of that crop)
11         ``SIGMA``: the blur's sigma (``GaussianBlur.get_params``; 0 when not blurred)
12         ``SOLARIZE``: 1 when solarised (p ``solarize_p``; crop 2 only)
=========  =========================================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as nnf
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as F

try:  # private helpers; torchvision's own adjust_hue is built on them, but takes one hue factor per call
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv
except ImportError:  # pragma: no cover - a torchvision that moved them: the per-sample fallback below
    _hsv_to_rgb = _rgb_to_hsv = None

__all__ = ["BLUR", "FACTORS", "GRAYSCALE", "JITTER", "N_PARAMS", "ORDER", "SIGMA", "SOLARIZE", "ColourDraw",
           "DeviceColour"]

JITTER = 0
FACTORS = slice(1, 5)
ORDER = slice(5, 9)
GRAYSCALE = 9
BLUR = 10
SIGMA = 11
SOLARIZE = 12
N_PARAMS = 13
_IDENTITY = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing


# ------------------------------------------------------------------------------------------------- the draws
@dataclass(frozen=True)
class ColourDraw:
    """The colour parameters of one crop, drawn from torch's global RNG with the same calls, in the same order, as
    the CPU path's transforms (``RandomApply(ColorJitter)``, ``RandomGrayscale``, ``RandomApply(GaussianBlur)``,
    and for crop 2 ``RandomSolarize``): the RNG stream, and so every later crop's geometry, is the CPU path's.

    ``jitter_ranges``: ``ColorJitter``'s normalised ranges (its ``brightness``, ``contrast``, ``saturation``,
    ``hue`` attributes; ``None`` for a factor switched off). ``solarize_p=None``: no solarisation step (crop 1),
    so no draw for it. An op is applied when its uniform draw ``r`` is ``< p``: p 0 never, p 1 always.
    (``RandomApply`` itself applies on ``r <= p``; the two differ only when ``r`` equals ``p`` exactly.)
    """

    jitter_ranges: tuple
    jitter_p: float
    grayscale_p: float
    blur_p: float
    blur_sigma: tuple[float, float]
    solarize_p: float | None = None

    @classmethod
    def from_transforms(cls, jitter: T.ColorJitter, jitter_p: float, grayscale_p: float, blur: T.GaussianBlur,
                        blur_p: float, solarize_p: float | None = None) -> "ColourDraw":
        """The draws of the CPU path's own transform objects (so both paths read the same ranges)."""
        ranges = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
        return cls(ranges, float(jitter_p), float(grayscale_p), float(blur_p), tuple(blur.sigma), solarize_p)

    def __call__(self) -> torch.Tensor:
        params = torch.zeros(N_PARAMS)
        params[FACTORS] = torch.tensor(_IDENTITY)
        params[ORDER] = -1.0
        if torch.rand(1).item() < self.jitter_p:  # RandomApply's draw, then ColorJitter's (when applied)
            self._draw_jitter(params)
        params[GRAYSCALE] = float(torch.rand(1).item() < self.grayscale_p)
        if torch.rand(1).item() < self.blur_p:  # RandomApply's draw, then GaussianBlur's sigma (when applied)
            params[BLUR] = 1.0
            params[SIGMA] = T.GaussianBlur.get_params(*self.blur_sigma)
        if self.solarize_p is not None:
            params[SOLARIZE] = float(torch.rand(1).item() < self.solarize_p)
        return params

    def _draw_jitter(self, params: torch.Tensor) -> None:
        order, *factors = T.ColorJitter.get_params(*self.jitter_ranges)
        params[JITTER] = 1.0
        for slot, op in enumerate(order.tolist()):
            if factors[op] is not None:  # ColorJitter skips a factor switched off
                params[ORDER.start + slot] = float(op)
                params[FACTORS.start + op] = float(factors[op])


# ---------------------------------------------------------------------------- vectorised kernels (one per op)
# torchvision's functionals take one scalar factor (or sigma) per call; these apply its arithmetic with one value
# per sample, ``values`` of shape (N,), so a whole batch is one call.
def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` (``image1 * r + image2 * (1 - r)``, clamped to [0, 1]) with a ratio per sample."""
    r = _per_sample(ratio)
    return images.mul(r).add_(other.mul(1.0 - r)).clamp_(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``adjust_brightness_image``: a blend with black, i.e. a product clamped to [0, 1]."""
    return images.mul(_per_sample(factors)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``adjust_contrast_image``: a blend with the mean of each image's grayscale version."""
    mean = F.rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factors)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``adjust_saturation_image``: a blend with each image's grayscale version."""
    return _blend(images, F.rgb_to_grayscale(images), factors)


def adjust_hue(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``adjust_hue_image``: RGB -> HSV, hue shifted by a factor per sample (mod 1), -> RGB, with torchvision's
    own conversions; without them (a torchvision that moved its private helpers), one ``adjust_hue`` per sample."""
    if _rgb_to_hsv is None or _hsv_to_rgb is None:
        return torch.stack([F.adjust_hue(image, float(f)) for image, f in zip(images, factors)])
    hue, saturation, value = _rgb_to_hsv(images).unbind(dim=-3)
    hue = hue.add(factors.view(-1, 1, 1)).remainder_(1.0)
    return _hsv_to_rgb(torch.stack((hue, saturation, value), dim=-3))


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``gaussian_blur_image`` with a sigma per sample: the same kernel formula (a softmax over a grid of
    ``kernel_size`` points spanning +-(k-1)/(2 sqrt 2)) and reflect padding, applied as two 1-D grouped
    convolutions (one group per sample and channel) instead of torchvision's 2-D kernel: the same sums up to
    float rounding, at 2k instead of k^2 products per pixel."""
    n, channels, height, width = images.shape
    limit = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    grid = torch.linspace(-limit, limit, steps=kernel_size, dtype=images.dtype, device=images.device)
    kernels = torch.softmax(grid.div(sigmas.view(-1, 1)).pow(2).neg(), dim=1)  # (N, k)
    weights = kernels.repeat_interleave(channels, dim=0)  # (N * C, k): one kernel per sample and channel
    pad = kernel_size // 2
    padded = nnf.pad(images, [pad, pad, pad, pad], mode="reflect").reshape(1, n * channels, height + 2 * pad,
                                                                          width + 2 * pad)
    rows = nnf.conv2d(padded, weights.view(n * channels, 1, 1, kernel_size), groups=n * channels)
    out = nnf.conv2d(rows, weights.view(n * channels, 1, kernel_size, 1), groups=n * channels)
    return out.view(n, channels, height, width)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # indexed as ColorJitter's order


# ----------------------------------------------------------------------------------------------- the device step
def _indices(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The samples a mask selects, as an index tensor on ``device``. Built where the parameters are (the CPU, in the
    trainer), so choosing the samples never waits for the device."""
    return mask.nonzero().flatten().to(device, non_blocking=True)


def _apply_to(images: torch.Tensor, index: torch.Tensor, op, *values: torch.Tensor) -> torch.Tensor:
    """``op`` on the selected samples only (with their own values), written back in place: each sample pays for
    the ops it draws, not for every op of the batch."""
    if index.numel() == 0:  # a shape, known on the host: no synchronisation
        return images
    selected = op(images.index_select(0, index), *(v.index_select(0, index) for v in values))
    return images.index_copy_(0, index, selected)


@dataclass(frozen=True)
class DeviceColour:
    """``DeviceColour(...)(crops, params)``: uint8 crops ``(N, 3, S, S)`` and their parameters ``(N, N_PARAMS)``
    -> float32 normalised crops on the crops' device, as the CPU path's colour transforms and ``Normalize`` (in
    torchvision's tensor arithmetic). In order: to [0, 1]; the jitter's ops in each crop's drawn order; grayscale
    (3 channels); Gaussian blur (``blur_kernel``, the crop's sigma); solarisation (``solarize_threshold`` on the
    0-255 scale); ImageNet normalisation. Keep ``params`` on the CPU: the crops each op touches are chosen there."""

    mean: Sequence[float]
    std: Sequence[float]
    blur_kernel: int = 9
    solarize_threshold: float = 128

    def __call__(self, crops: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if crops.dtype != torch.uint8 or crops.ndim != 4 or params.shape != (crops.shape[0], N_PARAMS):
            raise ValueError(f"DeviceColour takes uint8 crops (N, 3, S, S) and parameters (N, {N_PARAMS}); got "
                             f"{crops.dtype} {tuple(crops.shape)} and {tuple(params.shape)}")
        device = crops.device
        with torch.no_grad():
            images = crops.to(torch.float32).div_(255.0)
            values = params.to(device, torch.float32, non_blocking=True)
            images = self._jitter(images, params, values, device)
            images = _apply_to(images, _indices(params[:, GRAYSCALE] > 0, device),
                               lambda x: F.rgb_to_grayscale(x, num_output_channels=3))
            images = _apply_to(images, _indices(params[:, BLUR] > 0, device),
                               lambda x, s: gaussian_blur(x, s, self.blur_kernel), values[:, SIGMA])
            images = _apply_to(images, _indices(params[:, SOLARIZE] > 0, device),
                               lambda x: F.solarize(x, self.solarize_threshold / 255.0))
            return F.normalize(images, list(self.mean), list(self.std), inplace=True)

    @staticmethod
    def _jitter(images: torch.Tensor, params: torch.Tensor, values: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Slot by slot of the drawn order, each of the four ops on the crops that drew it in that slot."""
        order = params[:, ORDER]
        for slot in range(order.shape[1]):
            for op, kernel in enumerate(_JITTER_OPS):
                index = _indices(order[:, slot] == op, device)
                images = _apply_to(images, index, kernel, values[:, FACTORS.start + op])
        return images
