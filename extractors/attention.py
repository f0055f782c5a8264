"""xformers memory-efficient attention for timm ViT attention blocks, used on CUDA when xformers is installed.

timm's ``Attention`` calls PyTorch's ``scaled_dot_product_attention`` (which has flash and memory-efficient
kernels of its own on CUDA). DINOv2 and DinoBloom were trained and evaluated with xformers'
``memory_efficient_attention``; ``use_xformers(model)`` routes timm's plain self-attention blocks (no mask,
no gate, eval mode) through it, so users with the ``gpu`` extra get the kernels the authors used. timm has no
switch for this, hence the small replacement forward below; it computes exactly timm's forward otherwise.
"""

from __future__ import annotations

import types

import torch
from torch import nn


def xformers_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import xformers.ops  # noqa: F401  # pyright: ignore[reportMissingImports]  # (optional: the gpu extra)
    except ImportError:
        return False
    return True


def _memory_efficient_forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
    if attn_mask is not None or is_causal or self.gate is not None or self.training:
        return type(self).forward(self, x, attn_mask, is_causal)
    import xformers.ops as xops  # pyright: ignore[reportMissingImports]  # (optional: the gpu extra)

    B, N, _ = x.shape
    q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).unbind(2)  # (B, N, H, D) each
    q, k = self.q_norm(q), self.k_norm(k)  # norms act on the head dim, whatever the layout
    x = xops.memory_efficient_attention(q, k, v, scale=self.scale)
    x = self.norm(x.reshape(B, N, self.attn_dim))
    return self.proj_drop(self.proj(x))


def use_xformers(model: nn.Module) -> int:
    """Route timm ``Attention`` blocks of ``model`` through xformers; returns how many blocks were switched."""
    from timm.layers import Attention  # pyright: ignore[reportPrivateImportUsage]  # timm's public path (no __all__)

    switched = 0
    for module in model.modules():
        if type(module) is Attention:
            module.forward = types.MethodType(_memory_efficient_forward, module)
            switched += 1
    return switched
