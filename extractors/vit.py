"""Vision Transformers with patch 14 at 224 px (the DINOv2 / DinoBloom architectures), via timm.

In this module: the seeded random-initialisation entries ``vit-{s,b,l,g}14-random``. Features are the
token outputs after the final norm, pooled by the entry's ``pooling`` (CLS by default, as the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from extractors.base import ExtractorEntry, FeatureModel, pool_tokens

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

# size -> (timm model name, embedding dim); ViT-g uses SwiGLU MLPs like DINOv2/DinoBloom-G.
VIT_ARCHITECTURES = {
    "s": ("vit_small_patch14_dinov2", 384),
    "b": ("vit_base_patch14_dinov2", 768),
    "l": ("vit_large_patch14_dinov2", 1024),
    "g": ("vit_giant_patch14_dinov2", 1536),
}


def _token_features(backbone, images, *, pooling: str):
    return pool_tokens(backbone.forward_features(images), pooling, backbone.num_prefix_tokens)


def patch_tokens(backbone, images):
    """The final normed patch tokens (N, H*W, D) of a timm ViT, without its prefix (CLS, register) tokens."""
    return backbone.forward_features(images)[:, backbone.num_prefix_tokens :]


def build_timm_vit(entry: ExtractorEntry, timm_name: str) -> FeatureModel:
    import timm

    backbone = timm.create_model(timm_name, pretrained=False, img_size=entry.input_size, num_classes=0)
    return FeatureModel(backbone, partial(_token_features, pooling=entry.pooling), patch_tokens)


@dataclass(frozen=True)
class ViTSpec:
    """A timm ViT (e.g. ``vit_small_patch14_dinov2``) at ``img_size`` with some constructor kwargs changed
    (``overrides``, e.g. a smaller depth): the backbone definition the trainer and its exports share."""

    timm_name: str
    img_size: int = 224
    overrides: tuple = ()

    def create(self) -> VisionTransformer:
        import timm

        model = timm.create_model(self.timm_name, pretrained=False, img_size=self.img_size, num_classes=0,
                                  **dict(self.overrides))
        return cast("VisionTransformer", model)  # (timm types create_model as giving any nn.Module)

    @property
    def embed_dim(self) -> int:
        if "embed_dim" in dict(self.overrides):
            return int(dict(self.overrides)["embed_dim"])
        return next(dim for name, dim in VIT_ARCHITECTURES.values() if name == self.timm_name)

    def as_dict(self) -> dict:
        return {"timm_name": self.timm_name, "img_size": self.img_size, "overrides": dict(self.overrides)}

    @classmethod
    def from_dict(cls, data: dict) -> "ViTSpec":
        return cls(data["timm_name"], int(data["img_size"]), tuple(sorted(data.get("overrides", {}).items())))


def build_vit_spec(entry: ExtractorEntry, spec: ViTSpec) -> FeatureModel:
    return FeatureModel(spec.create(), partial(_token_features, pooling=entry.pooling), patch_tokens)


def _random_vit(size: str) -> ExtractorEntry:
    timm_name, dim = VIT_ARCHITECTURES[size]
    return ExtractorEntry(
        family="vit",
        architecture=f"timm:{timm_name}",
        dim=dim,
        build_fn=partial(build_timm_vit, timm_name=timm_name),
        meta_init=True,
    )


VIT_S14_RANDOM = _random_vit("s")
VIT_B14_RANDOM = _random_vit("b")
VIT_L14_RANDOM = _random_vit("l")
VIT_G14_RANDOM = _random_vit("g")
