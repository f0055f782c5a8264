"""Virchow2 (Paige; Zimmermann et al. 2024): a ViT-H/14 with 4 register tokens, SwiGLU MLPs, timm.

From the model card (huggingface.co/paige-ai/Virchow2) and its hub ``config.json``: ``vit_huge_patch14_224``
with ``img_size=224, init_values=1e-5, reg_tokens=4, mlp_ratio=5.3375, global_pool="", dynamic_img_size=True``
and, passed by the card, ``mlp_layer=SwiGLUPacked, act_layer=SiLU``. The card's embedding: the CLS token
concatenated with the mean of the patch tokens, "tokens 1-4 are register tokens so we ignore those": 2 x 1280
= 2560-d (pooling ``cls+mean``, the mean over the tokens after the 5 prefix tokens). Preprocessing: its timm
pretrained config, 224 px, bicubic, ImageNet mean/std. ``pytorch_model.bin`` / ``model.safetensors`` hold timm
key names. CC-BY-NC-ND 4.0, gated.
"""

from __future__ import annotations

from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry

VIRCHOW2 = hub_entry(
    "virchow",
    TimmArchitecture("vit_huge_patch14_224", (
        ("img_size", 224), ("init_values", 1e-5), ("reg_tokens", 4), ("mlp_ratio", 5.3375), ("global_pool", ""),
        ("dynamic_img_size", True), ("mlp_layer", "timm.layers:SwiGLUPacked"), ("act_layer", "torch.nn:SiLU"))),
    2560,
    hub_card("paige-ai/Virchow2", "pytorch_model.bin", "CC-BY-NC-ND-4.0", gated=True,
            revision="3158645804b69e3f3bc4439d4116edddf0840a72"),
    pooling="cls+mean",
    interpolation="bicubic",
)
