"""Extractor registry. Built-in entries are lazy ``module:attr`` targets, so listing them imports no model code.

Third-party packages add entries through the entry-point group ``hemabench.extractors`` (value:
``"package.module:ENTRY"``); ``--extractor path/to/file.py:Name`` loads one from a file. A target may be an
``ExtractorEntry``, a zero-argument factory returning one, or an ``nn.Module`` subclass declaring ``dim``.
"""

from __future__ import annotations

from typing import Any

from bench.registry import Registry


def as_entry(name: str, obj: Any):
    """Adapt what a target points at into an ``ExtractorEntry`` registered under ``name``."""
    import inspect

    from torch import nn

    from extractors.base import ExtractorEntry, entry_from_module_class

    if isinstance(obj, ExtractorEntry):
        return obj if obj.name == name else obj.replace(name=name)
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return entry_from_module_class(name, obj)
    if callable(obj):
        return as_entry(name, obj())
    raise TypeError(
        f"extractor {name!r} points at {type(obj).__name__}; expected an ExtractorEntry, a factory returning "
        "one, or an nn.Module subclass with a `dim` class attribute"
    )


EXTRACTORS: Registry = Registry("extractor", entry_point_group="hemabench.extractors", allow_files=True, adapt=as_entry)
register_extractor = EXTRACTORS.register

for _name, _target, _summary in [
    ("vit-s14-random", "extractors.vit:VIT_S14_RANDOM", "ViT-S/14 (DINOv2 architecture), random init, CLS, 384-d"),
    ("vit-b14-random", "extractors.vit:VIT_B14_RANDOM", "ViT-B/14 (DINOv2 architecture), random init, CLS, 768-d"),
    ("vit-l14-random", "extractors.vit:VIT_L14_RANDOM", "ViT-L/14 (DINOv2 architecture), random init, CLS, 1024-d"),
    ("vit-g14-random", "extractors.vit:VIT_G14_RANDOM", "ViT-g/14 SwiGLU (DINOv2 architecture), random init, 1536-d"),
    ("resnet50-random", "extractors.resnet:RESNET50_RANDOM", "ResNet50, random init, avg-pooled layer4, 2048-d"),
    ("resnet50-trunc-random", "extractors.resnet:RESNET50_TRUNC_RANDOM", "ResNet50 to layer3, random init, 1024-d"),
    ("color-histogram", "extractors.classical:COLOR_HISTOGRAM", "RGB histograms, 32 bins/channel, 96-d: the floor"),
    ("ctranspath", "extractors.ctranspath:CTRANSPATH", "CTransPath Swin-T + ConvStem, mean of final normed tokens, 768-d"),
    ("phikon", "extractors.phikon:PHIKON", "Phikon (Owkin iBOT ViT-B/16, histology), CLS of last_hidden_state, 768-d"),
    ("resnet50", "extractors.resnet:RESNET50", "ResNet50 ImageNet, 1000 classifier outputs (the paper's row)"),
    ("resnet50-pool", "extractors.resnet:RESNET50_POOL", "ResNet50 ImageNet, avg-pooled layer4, 2048-d"),
    ("resnet50-trunc", "extractors.resnet:RESNET50_TRUNC", "ResNet50 ImageNet to layer3, avg-pooled, 1024-d (paper)"),
    *[
        (f"{family}-{size}", f"extractors.dinov2:{family.upper()}_{size.upper()}", f"{label} ViT-{size.upper()}/14, CLS, {dim}-d")
        for family, label in (("dinov2", "DINOv2 LVD-142M"), ("dinobloom", "DinoBloom"))
        for size, dim in (("s", 384), ("b", 768), ("l", 1024), ("g", 1536))
    ],
]:
    EXTRACTORS.add_lazy(_name, _target, summary=_summary)


# "door:spec" names build an entry on the fly: door -> "module:function" taking the spec string.
DOORS = {
    "timm": ("extractors.timm_models:entry_for", "any timm model: timm:<model_name> (mean/std/size from timm)"),
    "hf": ("extractors.hf:entry_for", "a transformers vision model: hf:<repo id or local folder> (CLS token)"),
    "openclip": ("extractors.openclip:entry_for", "an OpenCLIP visual tower: openclip:<arch>[/<pretrained>]"),
    "trained": ("extractors.trained:entry_for", "a DinoBloom trainer export: trained:<path to export .pth>"),
}


def get_extractor(name: str):
    """The ``ExtractorEntry`` for a registered name, a door (``timm:``, ``hf:``, ``openclip:``), an entry point
    or ``path/to/file.py:Name``."""
    door, sep, spec = name.partition(":")
    if sep and door in DOORS and not EXTRACTORS.is_file_target(name):
        from bench.registry import import_target

        if not spec:
            raise ValueError(f"extractor {name!r}: say what to load after '{door}:' ({DOORS[door][1]})")
        return as_entry(name, import_target(DOORS[door][0])(spec))
    return EXTRACTORS.get(name)
