"""Prov-GigaPath's tile encoder (Providence / Microsoft; Xu et al., Nature 2024): a ViT-g with patch 16, timm.

From the hub ``config.json`` of prov-gigapath/prov-gigapath and github prov-gigapath/prov-gigapath:
``vit_giant_patch14_dinov2`` (SwiGLU MLPs by the architecture's default) with ``img_size=224, in_chans=3,
patch_size=16, embed_dim=1536, depth=40, num_heads=24, init_values=1e-05, mlp_ratio=5.33334`` (patch 16,
whatever the architecture's name says); the CLS token, 1536-d; ImageNet mean/std, bicubic. The card resizes to
256 and centre-crops 224; the harness resizes the whole cell to 224 x 224 for every model (docs/extractors.md).
``pytorch_model.bin`` holds timm key names. Apache 2.0; access gated (share contact information).
"""

from __future__ import annotations

from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry

PROV_GIGAPATH = hub_entry(
    "prov-gigapath",
    TimmArchitecture("vit_giant_patch14_dinov2", (
        ("img_size", 224), ("in_chans", 3), ("patch_size", 16), ("embed_dim", 1536), ("depth", 40),
        ("num_heads", 24), ("init_values", 1e-05), ("mlp_ratio", 5.33334))),
    1536,
    hub_card("prov-gigapath/prov-gigapath", "pytorch_model.bin", "Apache-2.0", gated=True),
    interpolation="bicubic",
)
