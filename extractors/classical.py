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
        pixels = (images.float() * self.std + self.mean).clamp(0.0, 1.0)
        # torch.histc has no batched form; a scatter-add of bin indices is the batched histogram.
        index = (pixels * self.bins).long().clamp(max=self.bins - 1).flatten(2)  # (N, 3, H*W)
        counts = torch.zeros(*index.shape[:2], self.bins, device=images.device)
        counts.scatter_add_(2, index, torch.ones_like(index, dtype=counts.dtype))
        return (counts / index.shape[2]).flatten(1)


COLOR_HISTOGRAM = ExtractorEntry(
    family="classical",
    architecture=f"rgb-histogram/{HISTOGRAM_BINS}-bins",
    dim=3 * HISTOGRAM_BINS,
    build_fn=lambda entry: FeatureModel(ColorHistogram(HISTOGRAM_BINS, entry.mean, entry.std), call_backbone),
    pooling="model",
)
