"""H-optimus-0 and H-optimus-1 (Bioptimus): ViT-g/14 with 4 register tokens, 40 blocks, timm.

From the model cards (huggingface.co/bioptimus/H-optimus-0, /H-optimus-1), the hub ``config.json`` of
H-optimus-0 and github bioptimus/releases: ``vit_giant_patch14_reg4_dinov2`` with ``img_size=224,
init_values=1e-5, dynamic_img_size=False`` (``img_size=224`` is required: the architecture's default grid is
518 px); the CLS token, 1536-d; input 224 x 224 (tiles at 0.5 um/px), normalised with the models' own H&E
statistics, mean (0.707223, 0.578729, 0.703617), std (0.211883, 0.230117, 0.177517), not ImageNet's.
``pytorch_model.bin`` holds timm key names. H-optimus-0: Apache 2.0; H-optimus-1: access gated, licence on
its card (not confirmed here).
"""

from __future__ import annotations

from extractors.timm_hub import TimmArchitecture, hub_card, hub_entry

HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
_ARCHITECTURE = TimmArchitecture("vit_giant_patch14_reg4_dinov2", (
    ("img_size", 224), ("init_values", 1e-5), ("dynamic_img_size", False)))

H_OPTIMUS_0 = hub_entry(
    "h-optimus", _ARCHITECTURE, 1536,
    hub_card("bioptimus/H-optimus-0", "pytorch_model.bin", "Apache-2.0", gated=True,
            revision="b145cc1e6c6b30d3251aa8b1f844e6974188a743"),
    mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
)

H_OPTIMUS_1 = hub_entry(
    "h-optimus", _ARCHITECTURE, 1536,
    hub_card("bioptimus/H-optimus-1", "pytorch_model.bin", "see the card (not confirmed here)", gated=True),
    mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
)
