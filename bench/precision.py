"""The numeric precision of a forward pass: ``--precision auto|fp32|tf32|bf16|fp16``.

Precision changes features, so the resolved value (never ``auto``) is part of the extractor's fingerprint (the
feature cache key) and of every result:

- ``fp32``: IEEE float32 everywhere; TF32 tensor-core matmuls and convolutions are switched off on CUDA (PyTorch
  allows TF32 convolutions by default).
- ``tf32``: float32 storage, TF32 matmuls/convolutions on CUDA (10-bit mantissa products, float32 sums); on a CPU
  this is plain fp32 and is recorded as such.
- ``bf16`` / ``fp16``: ``torch.autocast`` with that dtype on the device (weights stay float32; matmuls and
  convolutions run in the low precision, reductions and norms in float32). Honoured on a CPU too when asked for
  by name, although it is 5-15x slower there without AMX.
- ``auto``: bf16 on a CUDA GPU that computes it natively (compute capability >= 8.0), fp32 elsewhere
  (docs/benchmarks.md, "bf16 against fp32", for what bf16 changes).

``PRECISION_RULE`` goes into the fingerprint of every run whose precision is not CPU fp32: until it existed, a
declared bf16/fp16 ran in fp32 on a CPU and CUDA fp32 left TF32 convolutions on (PyTorch's default), under the same
cache keys. CPU fp32 keys, the common case, did not change.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from bench.core.errors import UsageError

PRECISION_CHOICES = ("auto", "fp32", "tf32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_RULE = 2


def resolve_precision(requested: str, device: torch.device, preferred: str = "auto") -> str:
    """The precision a run on ``device`` uses for ``requested`` (one of :data:`PRECISION_CHOICES`); ``auto`` takes
    the extractor's ``preferred`` precision (a plugin may declare one), else the device's default."""
    if requested not in PRECISION_CHOICES:
        raise UsageError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if requested == "auto" and preferred != "auto":
        requested = preferred
    if requested == "auto":
        return "bf16" if device.type == "cuda" and native_bf16(device) else "fp32"
    if requested == "tf32" and device.type != "cuda":
        return "fp32"  # TF32 exists on NVIDIA GPUs only: elsewhere the features are fp32's, and so is their key
    return requested


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 natively (compute capability 8.0 or newer: A100, H100, ...). Older GPUs
    (V100, T4) only emulate it, slower than fp32, so ``auto`` stays fp32 there."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off inside the block, restored after. Through the
    ``allow_tf32`` flags: once torch >= 2.9's ``fp32_precision`` API has set "ieee", torch refuses to read
    ``cudnn.allow_tf32`` (which libraries and ``torch.backends.cudnn.flags()`` do), so the two are not mixed."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    # (torch.backends.cudnn is a module swapped at import for a subclass whose allow_tf32 is a property)
    matmul.allow_tf32 = cudnn.allow_tf32 = enabled  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before  # pyright: ignore[reportAttributeAccessIssue]


@contextlib.contextmanager
def forward_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Run the forward passes inside this block in ``precision`` (a resolved value, not ``auto``)."""
    if precision not in PRECISION_CHOICES or precision == "auto":
        raise UsageError(f"precision {precision!r} is not resolved; expected one of fp32, tf32, bf16, fp16")
    if device.type == "cpu" and precision == "fp16" and _torch_version() < (2, 4):
        raise UsageError(f"--precision fp16 on a CPU needs torch >= 2.4 (float16 autocast), this is "
                         f"{torch.__version__}; use bf16 or fp32")
    dtype = AUTOCAST_DTYPES.get(precision)
    with _tf32(precision == "tf32") if device.type == "cuda" else contextlib.nullcontext():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            yield



def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)
