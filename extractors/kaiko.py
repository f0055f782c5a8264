"""kaiko.ai's pathology ViTs (Aben et al. 2024, "Towards large-scale training of pathology foundation models"):
ViT-S/16, S/8, B/16, B/8 and L/14, timm.

From github kaiko-ai/towards_large_pathology_fms (``hubconf.py``, README): each is ``timm.create_model(ARCH,
dynamic_img_size=True)`` with weights from the repository's release ``0.0.1`` (``<name>.pth``), loaded through
timm's ``checkpoint_filter_fn`` (which also reads DINO/DINOv2 key names): ``vit_small_patch16_224``,
``vit_small_patch8_224``, ``vit_base_patch16_224``, ``vit_base_patch8_224`` and ``vit_large_patch14_reg4_dinov2``
(4 register tokens, a 518-px position grid resampled by timm at every forward for 224-px input). Feature: the
CLS token (384, 384, 768, 768, 1024-d). Preprocessing: ``Resize(224)``, ``CenterCrop(224)``, mean and std
(0.5, 0.5, 0.5). Kaiko Non-Commercial Public License v1; not gated; no sha256 is published for the files.
"""

from __future__ import annotations

from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry, release_card

KAIKO_MEAN = KAIKO_STD = (0.5, 0.5, 0.5)
_RELEASE = "https://github.com/kaiko-ai/towards_large_pathology_fms/releases/download/0.0.1/{name}.pth"
_CARD = "https://github.com/kaiko-ai/towards_large_pathology_fms"
_LICENCE = "Kaiko Non-Commercial Public License v1"


def _kaiko(release: str, timm_name: str, dim: int):
    return hub_entry(
        "kaiko",
        TimmArchitecture(timm_name, (("dynamic_img_size", True),)),
        dim,
        release_card(_RELEASE.format(name=release), _CARD, _LICENCE),
        mean=KAIKO_MEAN, std=KAIKO_STD,
    )


KAIKO_VITS16 = _kaiko("vits16", "vit_small_patch16_224", 384)
KAIKO_VITS8 = _kaiko("vits8", "vit_small_patch8_224", 384)
KAIKO_VITB16 = _kaiko("vitb16", "vit_base_patch16_224", 768)
KAIKO_VITB8 = _kaiko("vitb8", "vit_base_patch8_224", 768)
KAIKO_VITL14 = _kaiko("vitl14", "vit_large_patch14_reg4_dinov2", 1024)


# Midnight-12k (kaiko.ai; Karasikov et al. 2025): a DINOv2 ViT-g/14 as a transformers Dinov2Model. From github
# kaiko-ai/Midnight (README) and the hub repository kaiko-ai/midnight (config.json + model.safetensors with
# transformers-4 names, SwiGLU MLPs): hidden 1536, 40 layers, 24 heads, patch 14. The card's classification
# embedding: the CLS token concatenated with the mean of the patch tokens, 3072-d; 224 px, mean = std = 0.5.
MIDNIGHT_CONFIG = (("hidden_size", 1536), ("num_hidden_layers", 40), ("num_attention_heads", 24), ("patch_size", 14),
                   ("image_size", 224), ("use_swiglu_ffn", True))


def _midnight():
    from extractors.hf_dinov2 import dinov2_entry

    return dinov2_entry("kaiko", MIDNIGHT_CONFIG, 3072,
                        hub_card("kaiko-ai/midnight", "model.safetensors",
                                 "MIT (the code's; the weights' licence is on the card)", gated=False,
                                 revision="adc6b15679c981cce6f9b018bbad09d16eeeda9f"),
                        pooling="cls+mean", mean=KAIKO_MEAN, std=KAIKO_STD)


MIDNIGHT = _midnight()
