"""DINOv3 ViT-S/16, B/16 and L/16 (Meta; Siméoni et al. 2025), pretrained on LVD-1689M: natural images, the
successor of the paper's DINOv2 baseline. timm's ``Eva`` implementation.

From github facebookresearch/dinov3 (``dinov3/hub/backbones.py``, README) and timm's port
(``timm/models/eva.py``: ``vit_{small,base,large}_patch16_dinov3``): patch 16, 4 register ("storage") tokens,
RoPE position encoding (no absolute position embedding), LayerScale 1e-5, GELU MLPs; the feature is the CLS token
after the final norm (384, 768, 1024-d), what Meta's model returns (timm's own default pool is the patch mean).
Preprocessing: Meta's ``make_transform(resize_size=256)``: a square resize to 256 x 256 (bilinear, antialiased),
ImageNet mean/std. Weights: Meta's files (``dinov3_vits16_pretrain_lvd1689m-08c60483.pth``, ..., behind
Meta's access form) or timm's hub port (``timm/vit_small_patch16_dinov3.lvd1689m``, ``model.safetensors``);
Meta's key names are mapped by timm's ``eva.checkpoint_filter_fn`` (storage tokens to ``reg_token``, LayerScale
to ``gamma_1/2``, the all-zero q/v biases of the qkv projection dropped as timm's port does). DINOv3 License.
"""

from __future__ import annotations

import contextlib
import io

from bench.core.errors import WeightsError
from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry
from extractors.timm_models import unwrap_timm

_SIZES = {"s": ("small", 384), "b": ("base", 768), "l": ("large", 1024)}


def unwrap_dinov3(container, source: str, backbone):
    """Meta's DINOv3 file or timm's port -> timm's ``Eva`` state dict. timm's port has no q/v bias: a Meta file
    whose q or v bias is not zero (the published LVD-1689M files' are) is refused rather than changed."""
    state = container.get("model", container) if isinstance(container, dict) else container
    meta_file = isinstance(state, dict) and "storage_tokens" in state
    if meta_file and getattr(backbone.blocks[0].attn, "q_bias", None) is None:
        for key, bias in state.items():
            if key.endswith("attn.qkv.bias"):
                q, _, v = bias.chunk(3, dim=-1)
                if q.abs().max() > 0 or v.abs().max() > 0:
                    raise WeightsError(f"{source}: {key} has non-zero query/value biases; the DINOv3 architecture "
                                       "used here (timm's, as its hub port) has none. Use timm's "
                                       "`timm:<model>_qkvb` with --weights for such a file")
    with contextlib.redirect_stdout(io.StringIO()):  # timm prints a line for every bias it leaves out
        return unwrap_timm(container, source, backbone)


def _dinov3(size: str):
    word, dim = _SIZES[size]
    model = f"vit_{word}_patch16_dinov3"
    entry = hub_entry(
        "dinov3", TimmArchitecture(model), dim,
        hub_card(f"timm/{model}.lvd1689m", "model.safetensors", "DINOv3 License", gated=None),
        input_size=256,
    )
    return entry.replace(unwrap_fn=unwrap_dinov3)


DINOV3_S = _dinov3("s")
DINOV3_B = _dinov3("b")
DINOV3_L = _dinov3("l")
