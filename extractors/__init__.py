"""Extractor registry. Built-in entries are lazy ``module:attr`` targets, so listing them imports no model code.

Schemes build an entry from a spec: ``timm:<model>``, ``hf:<repo or folder>``, ``openclip:<arch>[/<tag>]``,
``trained:<export.pth>``. Third-party packages add entries through the entry-point group
``hemabench.extractors`` (value ``"package.module:ENTRY"``); ``--extractor path/to/file.py:Name`` loads one from a
file (docs/extractors.md: a new extractor in one file). A target may be an ``ExtractorEntry``, a zero-argument
factory returning one, or an ``nn.Module`` subclass declaring ``dim``. The summary registered here is the one
``bench list`` shows and the result files record.
"""

from __future__ import annotations

from typing import Any

from bench.core.registry import Registry


def as_entry(name: str, obj: Any):
    """An ``nn.Module`` subclass declaring ``dim`` becomes an ``ExtractorEntry`` named ``name``; anything else is
    left to the registry (an entry, or a factory returning one)."""
    import inspect

    from torch import nn

    from extractors.base import entry_from_module_class

    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return entry_from_module_class(display_name(name, obj), obj)
    return obj


def display_name(name: str, cls) -> str:
    """A plugin class's name: its ``name`` attribute, else the name it was asked by (which the registry turns into
    ``<file name>:<Class>`` for ``path/to/file.py:Class``: the same wherever the file is run from)."""
    own = getattr(cls, "name", None)
    return own if isinstance(own, str) and own else name


EXTRACTORS: Registry = Registry(
    "extractor", base="extractors.base:ExtractorEntry", entry_point_group="hemabench.extractors", allow_files=True,
    adapt=as_entry,
)
register_extractor = EXTRACTORS.register

_SIZES = {"s": (384, "S"), "b": (768, "B"), "l": (1024, "L"), "g": (1536, "g")}
for _name, _target, _summary in [
    *[
        (f"vit-{size}14-random", f"extractors.vit:VIT_{size.upper()}14_RANDOM",
         f"ViT-{label}/14 (DINOv2 architecture{', SwiGLU' if size == 'g' else ''}, 224 px), random init seed 0, "
         f"CLS token, {dim}-d")
        for size, (dim, label) in _SIZES.items()
    ],
    ("resnet50-random", "extractors.resnet:RESNET50_RANDOM",
     "ResNet50, random init seed 0, global average pool after layer4, 2048-d"),
    ("resnet50-trunc-random", "extractors.resnet:RESNET50_TRUNC_RANDOM",
     "ResNet50 truncated after layer3 (the paper's 'ResNet 50 trunc' cut), random init seed 0, 1024-d"),
    ("color-histogram", "extractors.classical:COLOR_HISTOGRAM",
     "RGB intensity histograms (32 bins per channel), 96-d: a weight-free floor"),
    ("ctranspath", "extractors.ctranspath:CTRANSPATH",
     "CTransPath (Swin-T + ConvStem, histopathology SSL), mean of final normed tokens, 768-d"),
    ("phikon", "extractors.phikon:PHIKON",
     "Phikon (Owkin, iBOT ViT-B/16 on histology, 224 px), CLS of last_hidden_state, 768-d"),
    ("resnet50", "extractors.resnet:RESNET50",
     "ResNet50 ImageNet (IMAGENET1K_V2), the 1000 classifier outputs (the paper's 'ResNet 50' row)"),
    ("resnet50-pool", "extractors.resnet:RESNET50_POOL",
     "ResNet50 ImageNet (IMAGENET1K_V2), global average pool after layer4, 2048-d"),
    ("resnet50-trunc", "extractors.resnet:RESNET50_TRUNC",
     "ResNet50 ImageNet (IMAGENET1K_V2) up to layer3, average pooled (the paper's 'ResNet 50 trunc'), 1024-d"),
    ("phikon-v2", "extractors.phikon:PHIKON_V2",
     "Phikon-v2 (Owkin, DINOv2 ViT-L/16 on histology, transformers Dinov2Model), 224 px, CLS, 1024-d; non-commercial"),
    ("midnight", "extractors.kaiko:MIDNIGHT",
     "Midnight-12k (kaiko.ai, DINOv2 ViT-g/14, transformers Dinov2Model), 224 px, mean/std 0.5, CLS + patch mean, "
     "3072-d"),
    ("quiltnet-b32", "extractors.openclip:QUILTNET_B32",
     "QuiltNet-B-32 (CLIP ViT-B/32 fine-tuned on Quilt-1M histopathology), 224 px, image embedding, 512-d; MIT"),
    ("uni", "extractors.mahmood:UNI",
     "UNI (Mahmood Lab), ViT-L/16 on histology, 224 px, CLS, 1024-d; gated, CC-BY-NC-ND"),
    ("uni2-h", "extractors.mahmood:UNI2_H",
     "UNI2-h (Mahmood Lab), ViT-H/14 SwiGLU + 8 registers, 224 px, CLS, 1536-d; gated, CC-BY-NC-ND"),
    ("virchow2", "extractors.virchow:VIRCHOW2",
     "Virchow2 (Paige), ViT-H/14 SwiGLU + 4 registers, 224 px, CLS + mean of patch tokens, 2560-d; gated, CC-BY-NC-ND"),
    ("h-optimus-0", "extractors.hoptimus:H_OPTIMUS_0",
     "H-optimus-0 (Bioptimus), ViT-g/14 + 4 registers, 224 px, own H&E mean/std, CLS, 1536-d; Apache-2.0"),
    ("h-optimus-1", "extractors.hoptimus:H_OPTIMUS_1",
     "H-optimus-1 (Bioptimus), ViT-g/14 + 4 registers, 224 px, own H&E mean/std, CLS, 1536-d; gated"),
    ("prov-gigapath", "extractors.gigapath:PROV_GIGAPATH",
     "Prov-GigaPath tile encoder, ViT-g/16 SwiGLU, 224 px, CLS, 1536-d; gated, Apache-2.0"),
    *[
        (f"kaiko-{name}", f"extractors.kaiko:KAIKO_{name.upper()}",
         f"kaiko.ai {label} (pathology, DINOv2-style), 224 px, mean/std 0.5, CLS, {dim}-d; non-commercial")
        for name, label, dim in [("vits16", "ViT-S/16", 384), ("vits8", "ViT-S/8", 384), ("vitb16", "ViT-B/16", 768),
                                 ("vitb8", "ViT-B/8", 768), ("vitl14", "ViT-L/14 + 4 registers", 1024)]
    ],
    *[
        (f"dinov3-{size}", f"extractors.dinov3:DINOV3_{size.upper()}",
         f"DINOv3 ViT-{label}/16 (LVD-1689M, natural images), 256 px, CLS after the final norm, {dim}-d")
        for size, (dim, label) in {"s": (384, "S"), "b": (768, "B"), "l": (1024, "L")}.items()
    ],
    *[
        (f"dinov2-{size}", f"extractors.dinov2:DINOV2_{size.upper()}",
         f"DINOv2 ViT-{label}/14 (LVD-142M), 224 px, CLS after the final norm, {dim}-d")
        for size, (dim, label) in _SIZES.items()
    ],
    *[
        (f"dinobloom-{size}", f"extractors.dinov2:DINOBLOOM_{size.upper()}",
         f"DinoBloom-{size.upper()} (Koch et al. 2024), ViT-{label}/14 at 224 px, CLS after the final norm, {dim}-d")
        for size, (dim, label) in _SIZES.items()
    ],
]:
    EXTRACTORS.add_lazy(_name, _target, summary=_summary)

for _scheme, _factory, _argument, _summary in [
    ("timm", "extractors.timm_models:entry_for", "MODEL", "any timm model (mean/std/size from its pretrained config)"),
    ("hf", "extractors.hf:entry_for", "REPO_OR_FOLDER", "a transformers vision model (CLS token of last_hidden_state)"),
    ("openclip", "extractors.openclip:entry_for", "ARCH[/TAG]", "an OpenCLIP visual tower"),
    ("trained", "extractors.trained:entry_for", "EXPORT.pth", "a DinoBloom trainer export (bench train)"),
]:
    EXTRACTORS.add_scheme(_scheme, _factory, argument=_argument, summary=_summary, names_itself=_scheme == "trained",
                          path_argument=_scheme == "trained")


POOLINGS = ("cls+mean", "mean", "cls")  # token poolings a name may end with: dinobloom-s+mean (longest first)


def split_pooling(name: str) -> tuple[str, str | None]:
    """(extractor name, pooling) of ``NAME+POOLING``: a token model with another pooling than its entry's is
    named, cached and ranked as such (``dinobloom-s+mean``). A registered name is taken whole."""
    if name not in EXTRACTORS:
        for pooling in POOLINGS:
            if name.endswith(f"+{pooling}") and len(name) > len(pooling) + 1:
                return name[: -len(pooling) - 1], pooling
    return name, None


def get_extractor(name: str):
    """The ``ExtractorEntry`` for a registered name, a scheme (``timm:``, ``hf:``, ``openclip:``, ``trained:``),
    an entry point or ``path/to/file.py:Name``; ``NAME+POOLING`` (cls, mean, cls+mean) the same model pooling its
    tokens otherwise (:func:`split_pooling`)."""
    base, pooling = split_pooling(name)
    entry = EXTRACTORS.get(base)
    return entry.with_pooling(pooling) if pooling else entry


def check_extractor(name: str) -> None:
    """Refuse an extractor name that cannot resolve, importing no model code."""
    EXTRACTORS.check(split_pooling(name)[0])
