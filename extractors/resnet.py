"""ResNet50 (torchvision), the paper's CNN baseline.

In this module: seeded random-initialisation entries. ``resnet50-random``: global average pool after
layer4 (2048); ``resnet50-trunc-random``: the paper's "ResNet 50 trunc" cut, up to and including layer3,
global average pooled (1024).
"""

from __future__ import annotations

from functools import partial

from extractors.base import ExtractorEntry, FeatureModel


def _resnet_features(backbone, images, *, last_layer: str):
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
    name="resnet50-random",
    family="resnet",
    architecture="torchvision:resnet50/layer4+avgpool",
    dim=2048,
    build_fn=partial(build_resnet50, last_layer="layer4"),
    pooling="mean",
    summary="ResNet50, random init seed 0, global average pool after layer4",
)

RESNET50_TRUNC_RANDOM = ExtractorEntry(
    name="resnet50-trunc-random",
    family="resnet",
    architecture="torchvision:resnet50/layer3+avgpool",
    dim=1024,
    build_fn=partial(build_resnet50, last_layer="layer3"),
    pooling="mean",
    summary="ResNet50 truncated after layer3 (the paper's 'ResNet 50 trunc' cut), random init seed 0",
)
