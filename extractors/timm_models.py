"""The ``timm:<model_name>`` scheme: any timm model as an extractor.

Input size, interpolation and mean/std come from the model's pretrained config in timm; the feature is
timm's own pooled pre-logits output (``num_classes=0``), whose pooling the model defines (pooling "model").
The architecture is built with ``pretrained=False``; weights come through the harness's resolution: --weights,
``$BENCH_HOME/weights/timm:<name>/`` (a folder-safe form is used on disk), or the Hugging Face cache when the
model's pretrained config names a hub id and a revision. timm-format files load strictly, after timm's own
``checkpoint_filter_fn`` for the model family when it has one (as ``timm.create_model`` would apply it).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from bench.core.errors import UsageError
from extractors.base import ExtractorEntry, FeatureModel, WeightSource, call_backbone


def _build(entry: ExtractorEntry, model_name: str) -> FeatureModel:
    import timm
    from timm.models.vision_transformer import VisionTransformer

    from extractors.vit import patch_tokens

    backbone = timm.create_model(model_name, pretrained=False, num_classes=0)
    tokens = patch_tokens if isinstance(backbone, VisionTransformer) else None  # patch tokens of any timm ViT
    return FeatureModel(backbone, call_backbone, tokens)


def unwrap_timm(container, source: str, backbone):
    """A timm-format file (plain, or under ``state_dict`` / ``model``) after timm's ``checkpoint_filter_fn`` for
    the backbone's family, as ``timm.create_model(..., pretrained=True)`` applies it; a classifier head that the
    feature extractor (``num_classes=0``) lacks is dropped."""
    import importlib

    state = dict(container.get("state_dict", container.get("model", container)))
    module = importlib.import_module(type(backbone).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, backbone)
    own = backbone.state_dict()
    # num_classes=0: a classifier head in the file is not part of the feature extractor
    return {k: v for k, v in state.items() if not (k.startswith(("head.", "fc.", "classifier.")) and k not in own)}


def entry_for(model_name: str) -> ExtractorEntry:
    import timm
    import torch

    if not timm.is_model(model_name):
        import difflib

        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"timm has no model {model_name!r}.{hint} `python -c 'import timm; print(timm.list_models())'`")
    with torch.device("meta"):  # only to read the feature dim: no memory, no init
        probe: Any = timm.create_model(model_name, pretrained=False, num_classes=0)  # (pretrained_cfg, num_features)
    cfg = probe.pretrained_cfg or {}
    size = cfg.get("input_size", (3, 224, 224))
    if size[1] != size[2]:
        raise UsageError(f"timm:{model_name} expects non-square input {size[1:]}; the harness resizes to a square")
    hub = cfg.get("hf_hub_id")
    return ExtractorEntry(
        name=f"timm:{model_name}",
        family="timm",
        architecture=f"timm:{model_name}",
        dim=int(probe.num_features),
        build_fn=partial(_build, model_name=model_name),
        input_size=int(size[1]),
        interpolation=cfg.get("interpolation", "bilinear") if cfg.get("interpolation") in ("bilinear", "bicubic", "nearest") else "bilinear",
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),  # pyright: ignore[reportArgumentType]  # (RGB)
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),  # pyright: ignore[reportArgumentType]
        pooling="model",
        weights=(WeightSource("hub", hub, revision=cfg.get("hf_hub_revision")),) if hub else (WeightSource("file", f"a timm {model_name} checkpoint"),),
        summary=f"timm {model_name} (pretrained config: {cfg.get('tag') or 'default'})",
        unwrap_fn=unwrap_timm,
    )
