"""DINOv2 (LVD-142M) and DinoBloom: ViT-S/B/L/g with patch 14 at 224 px, CLS token after the final norm.

Architectures are timm's ``vit_*_patch14_dinov2`` (ViT-g with SwiGLU) built for a 224-px input, i.e. a 16 x 16
patch grid (1 + 256 position tokens).

Weight files accepted, recognised by their keys:

- DinoBloom (Zenodo record 10908163, ``DinoBloom-{S,B,L,G}.pth``): ``{"teacher": {"backbone.<key>": ...,
  "dino_head.*": ..., "ibot_head.*": ...}}``. The teacher is taken, the heads dropped, ``backbone.`` stripped.
- DINOv2 hub files (``dinov2_vit*14_pretrain.pth``): plain DINOv2 keys, 518-px grid (1 + 37 x 37 tokens).
- timm-format files of the same models (``mlp.fc1``/``fc2`` in place of DINOv2's SwiGLU ``mlp.w12``/``w3``).

Conversion to timm: ``mlp.w12``/``mlp.w3`` become ``mlp.fc1``/``mlp.fc2`` (timm's packed SwiGLU computes
silu(x1) * x2 on the two halves of fc1, as DINOv2's SwiGLUFFN), ``mask_token`` (used only in training) is
dropped. Every other key must match the architecture exactly (strict load, missing/unexpected keys listed).

Position embeddings on another grid are resampled once, at load time, by the method DINOv2's own
``interpolate_pos_encoding`` applies at every forward pass (which is what the DinoBloom authors' evaluation of
the DINOv2 baselines ran): the patch part reshaped to (1, D, M, M), ``F.interpolate(mode="bicubic",
scale_factor=((16 + 0.1) / M,) * 2, antialias=False, align_corners=False)`` (DINOv2's interpolate_offset 0.1),
giving 16 x 16; the CLS position is kept. DinoBloom files are already on the 16 x 16 grid and are not touched.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from bench.core.errors import WeightsError
from extractors.base import ExtractorEntry, WeightSource
from extractors.vit import VIT_ARCHITECTURES, build_timm_vit

DINOV2_INTERPOLATE_OFFSET = 0.1  # dinov2/models/vision_transformer.py: interpolate_offset default

# DinoBloom files on Zenodo (record 10908163); sha256 where it is published or was verified.
DINOBLOOM_SHA256 = {"s": "c2f7990b003e89bcece80e379fb8fe0ba2ec392ce19b286e8a294abd99568e44"}
ZENODO = "https://zenodo.org/records/10908163/files/DinoBloom-{size}.pth?download=1"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{size}14/dinov2_vit{size}14_pretrain.pth"


def resample_pos_embed_dinov2(pos_embed: torch.Tensor, grid: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """(1, P + M*M, D) -> (1, P + grid*grid, D) with DINOv2's bicubic interpolation (see module docstring)."""
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise WeightsError(f"position embedding with {patches.shape[1]} patch tokens is not a square grid")
    if side == grid:
        return pos_embed
    dim = patches.shape[2]
    scale = (grid + DINOV2_INTERPOLATE_OFFSET) / side
    resized = F.interpolate(
        patches.reshape(1, side, side, dim).permute(0, 3, 1, 2).float(),
        scale_factor=(scale, scale),
        mode="bicubic",
        antialias=False,
        align_corners=False,
    )
    if resized.shape[-2:] != (grid, grid):
        raise WeightsError(f"resampling {side}x{side} position tokens gave {tuple(resized.shape[-2:])}, not {grid}x{grid}")
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, resized], dim=1)


def unwrap_dinov2(container, source: str, backbone) -> dict[str, torch.Tensor]:
    """A DinoBloom teacher, a DINOv2 hub file or a timm-format file -> timm ViT state dict (docstring above)."""
    if not isinstance(container, dict):
        raise WeightsError(f"{source} does not hold a state dict")
    if "teacher" in container:  # DinoBloom / DINOv2 training checkpoint
        teacher = container["teacher"]
        if not isinstance(teacher, dict):
            raise WeightsError(f"{source}: 'teacher' holds a {type(teacher).__name__}, not a state dict; is this a "
                               "DinoBloom/DINOv2 checkpoint?")
        state = {k[len("backbone."):]: v for k, v in teacher.items() if k.startswith("backbone.")}
        others = sorted(k for k in teacher if not k.startswith(("backbone.", "dino_head.", "ibot_head.")))
        if others or not state:
            raise WeightsError(
                f"{source}: the 'teacher' dict should hold backbone.* and dino_head.*/ibot_head.* keys; "
                f"found {len(state)} backbone keys and unexpected {others[:5]}"
            )
    else:
        state = dict(container.get("state_dict", container.get("model", container)))
    out = {}
    for key, value in state.items():
        if key == "mask_token":
            continue
        key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        out[key] = value
    if "pos_embed" in out:
        pos_embed = out["pos_embed"]
        if not isinstance(pos_embed, torch.Tensor) or pos_embed.ndim != 3:
            found = getattr(pos_embed, "shape", type(pos_embed).__name__)
            raise WeightsError(f"{source}: 'pos_embed' should be a (1, tokens, dim) tensor, found {found}; the file "
                               "is not a ViT checkpoint")
        grid = backbone.patch_embed.grid_size[0]
        out["pos_embed"] = resample_pos_embed_dinov2(out["pos_embed"], grid, backbone.num_prefix_tokens)
    return out


def _entry(size: str, source: WeightSource) -> ExtractorEntry:
    timm_name, dim = VIT_ARCHITECTURES[size]
    return ExtractorEntry(
        family="dinov2",
        architecture=f"timm:{timm_name}",
        dim=dim,
        build_fn=partial(build_timm_vit, timm_name=timm_name),
        weights=(source,),
        unwrap_fn=unwrap_dinov2,
        meta_init=True,
    )


def _dinov2(size: str) -> ExtractorEntry:
    return _entry(size, WeightSource("url", DINOV2_URL.format(size=size)))


def _dinobloom(size: str) -> ExtractorEntry:
    source = WeightSource("url", ZENODO.format(size=size.upper()), sha256=DINOBLOOM_SHA256.get(size))
    return _entry(size, source)


DINOV2_S, DINOV2_B, DINOV2_L, DINOV2_G = (_dinov2(size) for size in "sblg")
DINOBLOOM_S, DINOBLOOM_B, DINOBLOOM_L, DINOBLOOM_G = (_dinobloom(size) for size in "sblg")
