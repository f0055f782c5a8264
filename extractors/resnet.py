"""ResNet50 (torchvision), the paper's CNN baselines, with ImageNet weights (IMAGENET1K_V2, as the authors).

- ``resnet50``: the paper's "ResNet 50" row: the whole network including its ImageNet classifier (1000 logits).
- ``resnet50-pool``: the usual features, global average pool after layer4 (2048).
- ``resnet50-trunc``: the paper's "ResNet 50 trunc": up to and including layer3, global average pool (1024).
- ``resnet50-random``, ``resnet50-trunc-random``: the same cuts with seeded random initialisation.

Weight files: torchvision/timm ResNet50 state dicts (``conv1.weight``, ..., ``fc.bias``), loaded strictly into
the whole network whatever the cut.
"""

from __future__ import annotations

from functools import partial

from extractors.base import ExtractorEntry, FeatureModel, WeightSource

# torchvision's IMAGENET1K_V2 file; its name carries the first 8 hex digits of the file's sha256
IMAGENET1K_V2 = WeightSource("url", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", sha256="11ad3fa6")


def _resnet_features(backbone, images, *, last_layer: str):
    if last_layer == "fc":
        return backbone(images)
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(images))))
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(backbone, layer)(x)
        if layer == last_layer:
            break
    return x.mean(dim=(2, 3))


def build_resnet50(entry: ExtractorEntry, last_layer: str) -> FeatureModel:
    from torchvision.models import resnet50

    return FeatureModel(resnet50(weights=None), partial(_resnet_features, last_layer=last_layer))


RESNET50_RANDOM = ExtractorEntry(
    family="resnet",
    architecture="torchvision:resnet50/layer4+avgpool",
    dim=2048,
    build_fn=partial(build_resnet50, last_layer="layer4"),
    pooling="mean",
    meta_init=True,
)

RESNET50_TRUNC_RANDOM = ExtractorEntry(
    family="resnet",
    architecture="torchvision:resnet50/layer3+avgpool",
    dim=1024,
    build_fn=partial(build_resnet50, last_layer="layer3"),
    pooling="mean",
    meta_init=True,
)

RESNET50 = ExtractorEntry(
    family="resnet",
    architecture="torchvision:resnet50/fc",
    dim=1000,
    build_fn=partial(build_resnet50, last_layer="fc"),
    pooling="model",
    weights=(IMAGENET1K_V2,),
    meta_init=True,
)

RESNET50_POOL = RESNET50_RANDOM.replace(weights=(IMAGENET1K_V2,))

RESNET50_TRUNC = RESNET50_TRUNC_RANDOM.replace(weights=(IMAGENET1K_V2,))
