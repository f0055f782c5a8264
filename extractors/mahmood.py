"""UNI and UNI2-h (Mahmood Lab; Chen et al., Nature Medicine 2024): pathology foundation models, timm ViTs.

Every setting from the model cards (huggingface.co/MahmoodLab/UNI, /UNI2-h) and the authors' loader
(github mahmoodlab/UNI, ``uni/get_encoder/get_encoder.py``), which build them with these ``timm.create_model``
arguments and load ``pytorch_model.bin`` (timm key names) strictly:

- UNI: ``vit_large_patch16_224``, ``img_size=224, patch_size=16, init_values=1e-5, dynamic_img_size=True``
  (``init_values`` creates the LayerScale parameters ``blocks.N.ls1.gamma`` the file holds); the CLS token,
  1024-d; ``Resize(224)`` (bilinear), ImageNet mean/std.
- UNI2-h: ``vit_giant_patch14_224`` with every size overridden: ``patch_size=14, depth=24, num_heads=24,
  embed_dim=1536, mlp_ratio=2.66667*2, init_values=1e-5, no_embed_class=True, mlp_layer=SwiGLUPacked,
  act_layer=SiLU, reg_tokens=8, dynamic_img_size=True``; the CLS token, 1536-d (8 register tokens follow it);
  ``Resize(224)`` + ``CenterCrop(224)``, ImageNet mean/std.

Both CC-BY-NC-ND 4.0, gated on the hub (sign in, accept the terms with an institutional e-mail). Revisions are
the commits public evaluation code pins (docs/extractors.md).
"""

from __future__ import annotations

from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry

UNI = hub_entry(
    "uni",
    TimmArchitecture("vit_large_patch16_224", (("img_size", 224), ("patch_size", 16), ("init_values", 1e-5),
                                               ("dynamic_img_size", True))),
    1024,
    hub_card("MahmoodLab/UNI", "pytorch_model.bin", "CC-BY-NC-ND-4.0", gated=True,
            revision="b55a5ec6cade1a39edfe6534189a9b8ca7a022f0"),
)

UNI2_H = hub_entry(
    "uni",
    TimmArchitecture("vit_giant_patch14_224", (
        ("img_size", 224), ("patch_size", 14), ("depth", 24), ("num_heads", 24), ("init_values", 1e-5),
        ("embed_dim", 1536), ("mlp_ratio", 2.66667 * 2), ("no_embed_class", True),
        ("mlp_layer", "timm.layers:SwiGLUPacked"), ("act_layer", "torch.nn:SiLU"), ("reg_tokens", 8),
        ("dynamic_img_size", True))),
    1536,
    hub_card("MahmoodLab/UNI2-h", "pytorch_model.bin", "CC-BY-NC-ND-4.0", gated=True,
            revision="d517a8dd47902dd7c308b3c36f63bce47e7b9a43"),
)
