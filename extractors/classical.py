"""Classical, weight-free baselines: the floor every learned extractor should beat."""

from __future__ import annotations

import torch
from torch import nn

from extractors.base import IMAGENET_MEAN, IMAGENET_STD, ExtractorEntry, FeatureModel, call_backbone

HISTOGRAM_BINS = 32


class ColorHistogram(nn.Module):
    """Per-channel RGB intensity histograms (``bins`` each), normalised to sum 1 per channel.

    Input is the normalised batch the harness gives every extractor; the normalisation is undone first.
    """

    mean: torch.Tensor  # buffers (registered in __init__)
    std: torch.Tensor

    def __init__(self, bins: int = HISTOGRAM_BINS, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.bins = bins
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.float() * self.std  # a new tensor: the in-place steps below never touch the input
        pixels.add_(self.mean).clamp_(0.0, 1.0).mul_(self.bins)
        # torch.histc has no batched form: each (image, channel) gets its own range of bins, so one bincount of
        # the offset bin indices is every histogram at once (the counts are exact integers, as a scatter-add's)
        index = pixels.to(torch.int64).clamp_(max=self.bins - 1).flatten(2)  # (N, 3, H*W)
        n, channels, area = index.shape
        index += (torch.arange(n * channels, device=index.device) * self.bins).view(n, channels, 1)
        counts = torch.bincount(index.flatten(), minlength=n * channels * self.bins).to(torch.float32)
        return (counts.view(n, channels * self.bins) / area)


COLOR_HISTOGRAM = ExtractorEntry(
    family="classical",
    architecture=f"rgb-histogram/{HISTOGRAM_BINS}-bins",
    dim=3 * HISTOGRAM_BINS,
    build_fn=lambda entry: FeatureModel(ColorHistogram(HISTOGRAM_BINS, entry.mean, entry.std), call_backbone),
    pooling="model",
)
