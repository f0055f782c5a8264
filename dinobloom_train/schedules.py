"""Per-iteration schedules of the DinoBloom trainer (DINOv2's ``CosineScheduler`` and ``build_schedulers``).

Defaults are DinoBloom's (DESIGN.md "DinoBloom trainer"; the epoch-based lengths are DinoBloom's config on top of
DINOv2's defaults: one "epoch" = ``iters_per_epoch`` iterations, DinoBloom's ``OFFICIAL_EPOCH_LENGTH`` = 500;
lr warm-up 10 epochs, teacher-temperature warm-up 30 epochs, last layer frozen for 1 epoch). A re-implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.core.errors import UsageError

__all__ = ["cosine_schedule", "scaled_lr", "Schedules", "DINOBLOOM_ITERS_PER_EPOCH"]

DINOBLOOM_ITERS_PER_EPOCH = 500  # DinoBloom's train.OFFICIAL_EPOCH_LENGTH (DINOv2's default is 1250)


def cosine_schedule(base: float, final: float, total_iters: int, warmup_iters: int = 0,
                    start_warmup: float = 0.0, freeze_iters: int = 0) -> np.ndarray:
    """(total_iters,) float64 values, DINOv2 ``CosineScheduler`` semantics.

    ``freeze_iters`` zeros, then ``warmup_iters`` values ``np.linspace(start_warmup, base, warmup_iters)`` (the
    last warm-up value is ``base``), then ``n = total - warmup - freeze`` values
    ``final + (base - final) * (1 + cos(pi * i / n)) / 2`` for i = 0..n-1 (starts at ``base``; the last value
    approaches but does not reach ``final``, as in DINOv2, whose scheduler returns ``final`` past the end).
    Raises UsageError (a ValueError) when ``freeze_iters + warmup_iters > total_iters`` (DINOv2 asserts).
    """
    total_iters, warmup_iters, freeze_iters = int(total_iters), int(warmup_iters), int(freeze_iters)
    if min(total_iters, warmup_iters, freeze_iters) < 0:
        raise UsageError("iteration counts must be >= 0")
    n_cosine = total_iters - warmup_iters - freeze_iters
    if n_cosine < 0:
        raise UsageError(f"freeze_iters ({freeze_iters}) + warmup_iters ({warmup_iters}) exceed "
                         f"total_iters ({total_iters})")
    freeze = np.zeros(freeze_iters)
    warmup = np.linspace(start_warmup, base, warmup_iters)
    i = np.arange(n_cosine)
    cosine = final + 0.5 * (base - final) * (1.0 + np.cos(np.pi * i / max(n_cosine, 1)))
    schedule = np.concatenate((freeze, warmup, cosine)).astype(np.float64)
    assert len(schedule) == total_iters
    return schedule


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """DINOv2's ``sqrt_wrt_1024`` rule: ``base_lr * sqrt(global_batch / 1024)``."""
    if global_batch <= 0:
        raise UsageError(f"global_batch must be positive, got {global_batch}")
    return base_lr * math.sqrt(global_batch / 1024.0)


@dataclass
class Schedules:
    """All per-iteration schedules for a run of ``total_iters`` iterations; arrays of length ``total_iters``.

    Lengths given in iterations (``warmup_iters``, ``warmup_teacher_temp_iters``, ``freeze_last_layer_iters``)
    default to the epoch counts (10, 30, 1) times ``iters_per_epoch``. Schedules span ``total_iters`` (the lr
    cosine ends there), so a run meant to stop early (DinoBloom peaks at 4k-8k iterations of a longer
    schedule) should pass the full schedule length and stop the loop itself.

    - ``lr``: linear warm-up ``start_warmup_lr`` -> peak over ``warmup_iters``, cosine to ``min_lr``; peak =
      ``lr_override`` if given, else ``scaled_lr(base_lr, global_batch)``.
    - ``last_layer_lr``: ``lr`` with the first ``freeze_last_layer_iters`` values set to 0 (overwritten, not
      shifted, as DINOv2 does).
    - ``wd``: cosine ``weight_decay`` -> ``weight_decay_end`` (no warm-up).
    - ``momentum``: cosine ``momentum_teacher`` -> ``final_momentum_teacher`` (EMA teacher momentum).
    - ``teacher_temp``: ``np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_iters)`` then constant
      ``teacher_temp``; truncated to ``total_iters`` if the warm-up is longer than the run.

    ``at(it)`` gives all values at one iteration, the final values past the end (DINOv2's ``__getitem__``).
    """

    total_iters: int
    global_batch: int  # total over all ranks; sets the peak lr via scaled_lr
    iters_per_epoch: int = DINOBLOOM_ITERS_PER_EPOCH
    base_lr: float = 2e-4  # for a global batch of 1024
    lr_override: float | None = None
    min_lr: float = 1e-6
    start_warmup_lr: float = 0.0
    warmup_epochs: float = 10
    warmup_iters: int | None = None
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2
    momentum_teacher: float = 0.994
    final_momentum_teacher: float = 1.0
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: float = 30
    warmup_teacher_temp_iters: int | None = None
    freeze_last_layer_epochs: float = 1
    freeze_last_layer_iters: int | None = None

    lr: np.ndarray = field(init=False, repr=False)
    last_layer_lr: np.ndarray = field(init=False, repr=False)
    wd: np.ndarray = field(init=False, repr=False)
    momentum: np.ndarray = field(init=False, repr=False)
    teacher_temp_schedule: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.total_iters <= 0 or self.iters_per_epoch <= 0:
            raise UsageError("total_iters and iters_per_epoch must be positive")
        if self.warmup_iters is None:
            self.warmup_iters = int(round(self.warmup_epochs * self.iters_per_epoch))
        if self.warmup_teacher_temp_iters is None:
            self.warmup_teacher_temp_iters = int(round(self.warmup_teacher_temp_epochs * self.iters_per_epoch))
        if self.freeze_last_layer_iters is None:
            self.freeze_last_layer_iters = int(round(self.freeze_last_layer_epochs * self.iters_per_epoch))
        if self.warmup_iters > self.total_iters:
            raise UsageError(f"lr warm-up ({self.warmup_iters} iterations) is longer than the run "
                             f"({self.total_iters}); pass warmup_iters or a smaller iters_per_epoch")
        n = self.total_iters
        self.lr = cosine_schedule(self.peak_lr, self.min_lr, n, warmup_iters=self.warmup_iters,
                                  start_warmup=self.start_warmup_lr)
        self.last_layer_lr = self.lr.copy()
        self.last_layer_lr[: self.freeze_last_layer_iters] = 0.0
        self.wd = cosine_schedule(self.weight_decay, self.weight_decay_end, n)
        self.momentum = cosine_schedule(self.momentum_teacher, self.final_momentum_teacher, n)
        w = self.warmup_teacher_temp_iters
        self.teacher_temp_schedule = cosine_schedule(self.teacher_temp, self.teacher_temp, max(n, w),
                                                     warmup_iters=w, start_warmup=self.warmup_teacher_temp)[:n]

    @property
    def peak_lr(self) -> float:
        return self.lr_override if self.lr_override is not None else scaled_lr(self.base_lr, self.global_batch)

    def at(self, it: int) -> dict[str, float]:
        """Values at iteration ``it``: lr, last_layer_lr, wd, momentum, teacher_temp (finals past the end)."""
        if it < 0:
            raise ValueError(f"iteration must be >= 0, got {it}")
        if it >= self.total_iters:
            return {"lr": self.min_lr, "last_layer_lr": self.min_lr, "wd": self.weight_decay_end,
                    "momentum": self.final_momentum_teacher, "teacher_temp": self.teacher_temp}
        return {"lr": float(self.lr[it]), "last_layer_lr": float(self.last_layer_lr[it]),
                "wd": float(self.wd[it]), "momentum": float(self.momentum[it]),
                "teacher_temp": float(self.teacher_temp_schedule[it])}
