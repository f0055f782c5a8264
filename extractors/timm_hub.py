"""Named entries for timm models published on the Hugging Face hub with their own constructor arguments (the
pathology foundation models and DINOv3): the architecture exactly as the model card builds it, its
preprocessing and pooling, where its weights are published, under which licence and whether access is gated.

A :class:`TimmArchitecture` is a timm model name plus the keyword arguments the card passes to
``timm.create_model`` (layer classes named as ``"module:attr"``, e.g. ``"timm.layers:SwiGLUPacked"``), always
with ``num_classes=0``. The hub files hold timm's own key names; they are loaded after timm's
``checkpoint_filter_fn`` for the model family (as ``timm.create_model(..., pretrained=True)`` does) and strictly.

Features: the final normed tokens of ``forward_features`` pooled as the card says: the CLS token (``cls``), the
mean of the patch tokens after every prefix token (CLS and registers) (``mean``), or both concatenated
(``cls+mean``); the patch tokens for ``bench plot patch-pca`` likewise leave the prefix tokens out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.core.registry import import_target
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, ExtractorEntry, FeatureModel, WeightSource
from extractors.timm_models import unwrap_timm
from extractors.vit import _token_features, patch_tokens

HF = "https://huggingface.co/"


@dataclass(frozen=True)
class TimmArchitecture:
    """``timm.create_model(model, pretrained=False, num_classes=0, **kwargs)``; ``kwargs`` as (name, value)
    pairs, a value ``"module:attr"`` under a ``*_layer`` name being a class to import."""

    model: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def resolved_kwargs(self, **overrides: Any) -> dict[str, Any]:
        values = {**dict(self.kwargs), **overrides}
        return {k: import_target(v) if k.endswith("_layer") and isinstance(v, str) else v for k, v in values.items()}

    def create(self, **overrides: Any):
        """The architecture with random weights (``overrides``, e.g. ``depth=2``, only for tests)."""
        import timm

        return timm.create_model(self.model, pretrained=False, num_classes=0, **self.resolved_kwargs(**overrides))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs)
        return f"timm:{self.model}({args})"


def build_hub_model(entry: ExtractorEntry, architecture: TimmArchitecture) -> FeatureModel:
    backbone = architecture.create()
    return FeatureModel(backbone, partial(_token_features, pooling=entry.pooling), patch_tokens)


@dataclass(frozen=True)
class ModelCard:
    """What the model card says beyond the architecture: where the weights are published, the licence, and
    whether access is gated (None: not confirmed)."""

    url: str
    licence: str
    gated: bool | None
    source: WeightSource

    def metadata(self, **more) -> dict:
        """What results record of the card (``extractor.metadata``) and ``bench list --details`` shows."""
        return {"licence": self.licence, "gated": self.gated, "card": self.url, **more}


def hub_card(repo: str, filename: str, licence: str, gated: bool | None, revision: str | None = None,
             sha256: str | None = None) -> ModelCard:
    """Weights in a Hugging Face repository; ``revision``: a commit, where one is known (an unpinned source is
    never downloaded: the error says how to get the file)."""
    return ModelCard(HF + repo, licence, gated, WeightSource("hub", repo, sha256=sha256, revision=revision,
                                                              filename=filename))


def release_card(url: str, card: str, licence: str, sha256: str | None = None) -> ModelCard:
    """Weights published as a downloadable file (a GitHub release asset)."""
    return ModelCard(card, licence, False, WeightSource("url", url, sha256=sha256))


def hub_entry(family: str, architecture: TimmArchitecture, dim: int, card: ModelCard, *,
              pooling: str = "cls", mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation: str = "bilinear",
              input_size: int = 224, summary: str = "") -> ExtractorEntry:
    return ExtractorEntry(
        family=family,
        architecture=architecture.describe(),
        dim=dim,
        build_fn=partial(build_hub_model, architecture=architecture),
        input_size=input_size,
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        pooling=pooling,
        weights=(card.source,),
        summary=summary,
        metadata=card.metadata(timm=architecture.model),
        unwrap_fn=unwrap_timm,
        meta_init=True,
    )
