"""Test plugins: tiny extractors loaded through the `path/to/file.py:ClassName` door."""

import time

import timm
from torch import nn


class TinyViT(nn.Module):
    """A 2-block ViT at 28 px: the real timm architecture, small enough for fast tests."""

    dim = 32
    input_size = 28
    forward_calls = 0  # counted across instances, so tests can see whether a cache hit ran the model
    fail_after: int | None = None  # raise after this many calls (simulates an interrupted extraction)
    sleep_seconds = 0.0

    def __init__(self):
        super().__init__()
        self.vit = timm.models.vision_transformer.VisionTransformer(
            img_size=28, patch_size=7, embed_dim=32, depth=2, num_heads=2, num_classes=0
        )

    def forward(self, x):
        cls = type(self)
        if cls.fail_after is not None and cls.forward_calls >= cls.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        cls.forward_calls += 1
        if cls.sleep_seconds:
            time.sleep(cls.sleep_seconds)
        return self.vit(x)


class NoDim(nn.Module):
    """Lacks the `dim` attribute: must be refused with a clear error."""

    def forward(self, x):
        return x.flatten(1)


class Crashes(TinyViT):
    """A plugin with a bug: its forward raises a plain RuntimeError."""

    def forward(self, x):
        raise RuntimeError("boom: an index bug inside the plugin")


class WrongShape(TinyViT):
    """Breaks the extractor contract: declares dim 32, returns 5 features."""

    def forward(self, x):
        return super().forward(x)[:, :5]


class NaNWeights(nn.Module):
    """Weights damaged by a diverged run: one NaN in the head, so every feature is NaN."""

    dim = 8
    input_size = 28

    def __init__(self):
        super().__init__()
        import torch

        self.head = nn.Linear(3, 8)
        with torch.no_grad():
            self.head.weight[0, 0] = float("nan")

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))


class DiesInRank(TinyViT):
    """TinyViT whose process kills itself (SIGKILL, as the OOM killer or a node failure would) at forward call
    number ``HEMABENCH_TEST_DIE_AFTER`` in the torchrun rank ``HEMABENCH_TEST_DIE_RANK``; each call sleeps
    ``HEMABENCH_TEST_SLEEP`` seconds, so the other ranks are still at work then."""

    def forward(self, x):
        import os
        import signal

        time.sleep(float(os.environ.get("HEMABENCH_TEST_SLEEP", "0")))
        if os.environ.get("RANK") == os.environ.get("HEMABENCH_TEST_DIE_RANK", "-"):
            if type(self).forward_calls >= int(os.environ.get("HEMABENCH_TEST_DIE_AFTER", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


class Constant(TinyViT):
    """The same feature for every image: every probe predicts one class (a collapse, issue 26)."""

    def forward(self, x):
        return super().forward(x).mul(0.0)
