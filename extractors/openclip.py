"""The ``openclip:<arch>[/<pretrained>]`` scheme: the visual tower of an OpenCLIP model as an extractor.

``<arch>`` is an open_clip model config name (``ViT-B-32``; ``ViT-B/32`` is read as ``ViT-B-32``), or an
``hf-hub:org/repo`` / ``local-dir:/path`` model; ``<pretrained>`` is an open_clip pretrained tag
(``laion2b_s34b_b79k``) or a checkpoint file. ``build`` runs ``open_clip.create_model_and_transforms(arch,
pretrained=pretrained or None)`` (tags are fetched through open_clip's cache, which honours
``HF_HUB_OFFLINE``) and keeps ``model.visual`` as the backbone; without ``<pretrained>`` the model is the
seeded random initialisation (``entry.seed``).

Feature: the visual tower's output embedding, ``model.visual(x)``, which is ``model.encode_image(x)`` without
its optional L2 normalisation (pooling "model"; dim = the tower's ``output_dim``, the config's embed_dim).

Preprocessing: mean/std and interpolation (bicubic for most models) from the model's preprocessing config,
the one open_clip attaches as ``model.visual.preprocess_cfg`` (defaults <- the model's open_clip_config.json
<- the pretrained tag's values), and the tower's image size. It is worked out from the configs when the entry
is made (the dim and transform are known before any model exists) and checked against the built model's.
Note: OpenCLIP's own eval transform resizes the shortest side and centre-crops; the harness instead resizes
to input_size x input_size with no crop, the paper's protocol, applied to every model alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from bench.core.errors import UsageError
from extractors.base import INTERPOLATIONS, RANDOM_INIT, ExtractorEntry, FeatureModel, WeightSource
from extractors.hf import PretrainedEntry

SCHEMAS = ("hf-hub:", "local-dir:")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``<arch>[/<pretrained>]`` -> (open_clip model name, pretrained tag or file or None)."""
    import open_clip

    if spec.startswith(SCHEMAS):
        return spec, None
    parts = spec.split("/")
    for i in range(1, len(parts) + 1):  # the shortest known arch: "ViT-B/32/openai" -> ("ViT-B-32", "openai")
        arch = "-".join(parts[:i])
        if open_clip.get_model_config(arch) is not None:
            return arch, "/".join(parts[i:]) or None
    import difflib

    close = difflib.get_close_matches(parts[0], open_clip.list_models(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"openclip:{spec}: open_clip has no model config {parts[0]!r}.{hint} (open_clip.list_models())")


def _schema_config(arch: str) -> dict[str, Any]:
    """The open_clip_config.json of an hf-hub:/local-dir: model ({"model_cfg", "preprocess_cfg"})."""
    if arch.startswith("local-dir:"):
        path = Path(arch[len("local-dir:"):]).expanduser() / "open_clip_config.json"
        if not path.is_file():
            raise UsageError(f"openclip:{arch}: {path} does not exist")
        return json.loads(path.read_text(encoding="utf-8"))
    from open_clip.factory import _get_hf_config

    try:
        return _get_hf_config(arch[len("hf-hub:"):])
    except Exception as exc:  # offline and not cached, no such repo
        raise UsageError(
            f"openclip:{arch}: cannot read its open_clip_config.json ({exc}); with HF_HUB_OFFLINE set it must be "
            "in the Hugging Face cache"
        ) from exc


def preprocess_values(arch: str, pretrained: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model config, preprocessing config, pretrained-tag config) as ``open_clip.create_model`` resolves them."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    preprocess = asdict(PreprocessCfg())
    tag_cfg: dict[str, Any] = {}
    if arch.startswith(SCHEMAS):
        full = _schema_config(arch)
        if "model_cfg" not in full:
            raise UsageError(f"openclip:{arch}: its open_clip_config.json has no model_cfg")
        model_cfg = full["model_cfg"]
        preprocess = merge_preprocess_dict(preprocess, full.get("preprocess_cfg", {}))
    else:
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise UsageError(f"openclip:{arch}: open_clip has no model config {arch!r} (open_clip.list_models())")
        if pretrained:
            tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
            if tag_cfg:
                preprocess = merge_preprocess_dict(preprocess, tag_cfg)
            elif not os.path.isfile(pretrained):
                tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
                raise UsageError(
                    f"openclip:{arch}/{pretrained}: {pretrained!r} is neither a pretrained tag of {arch} "
                    f"(tags: {tags}) nor a checkpoint file"
                )
    # create_model sets the size from the built tower's image_size, i.e. the vision config's
    preprocess["size"] = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    return model_cfg, preprocess, tag_cfg


def _square(size: Any, spec: str) -> int:
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise UsageError(f"openclip:{spec}: image size {tuple(size)} is not square; the harness resizes to a square")
        size = size[0]
    return int(size)


def visual_features(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model.visual(x)``: the image embedding before encode_image's optional normalisation."""
    output = backbone(images)
    if isinstance(output, (tuple, list)):  # towers that also return their tokens (CoCa): the pooled embedding first
        output = output[0]
    return output.flatten(1)


def _build(entry: ExtractorEntry, arch: str, pretrained: str | None) -> FeatureModel:
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained, pretrained_text=False)
    visual = cast(nn.Module, model.visual)  # (a submodule; nn.Module's __getattr__ types it as a tensor or module)
    built = open_clip.get_model_preprocess_cfg(model)
    problems = []
    output_dim = getattr(visual, "output_dim", None)
    if output_dim is not None and int(output_dim) != entry.dim:
        problems.append(f"output_dim {output_dim} vs entry dim {entry.dim}")
    if built:
        if tuple(float(v) for v in built["mean"]) != entry.mean or tuple(float(v) for v in built["std"]) != entry.std:
            problems.append(f"mean/std {built['mean']}/{built['std']} vs entry {entry.mean}/{entry.std}")
        if _square(built.get("size", entry.input_size), arch) != entry.input_size:
            problems.append(f"image size {built.get('size')} vs entry {entry.input_size}")
    if problems:
        raise RuntimeError(f"extractor {entry.name!r}: the built open_clip model differs from its entry: " + "; ".join(problems))
    return FeatureModel(visual, visual_features)


def entry_for(spec: str) -> ExtractorEntry:
    """The entry for ``openclip:<arch>[/<pretrained>]`` (see the module docstring)."""
    arch, pretrained = parse_spec(spec)
    model_cfg, preprocess, tag_cfg = preprocess_values(arch, pretrained)
    if "embed_dim" not in model_cfg:
        raise UsageError(f"openclip:{spec}: its model config has no embed_dim")
    interpolation = preprocess.get("interpolation", "bicubic")
    if pretrained is None and arch.startswith("hf-hub:"):
        weights: tuple[WeightSource, ...] = (WeightSource("hub", arch[len("hf-hub:"):]),)
    elif pretrained is None and arch.startswith("local-dir:"):
        weights = (WeightSource("file", arch[len("local-dir:"):]),)
    elif pretrained is None:
        weights = RANDOM_INIT
    elif tag_cfg:
        hub, url = tag_cfg.get("hf_hub"), tag_cfg.get("url")
        weights = (WeightSource("hub", hub.rstrip("/")) if hub else WeightSource("url", url or ""),)
    else:
        weights = (WeightSource("file", str(Path(pretrained).resolve())),)
    cls = ExtractorEntry if weights == RANDOM_INIT else PretrainedEntry
    origin = f"pretrained {pretrained}" if pretrained else ("random init" if weights == RANDOM_INIT else "its own weights")
    return cls(
        name=f"openclip:{spec}",
        family="openclip",
        architecture=f"openclip:{spec}",
        dim=int(model_cfg["embed_dim"]),
        build_fn=partial(_build, arch=arch, pretrained=pretrained),
        input_size=_square(preprocess["size"], spec),
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
        mean=tuple(float(v) for v in preprocess["mean"]),  # pyright: ignore[reportArgumentType]  # (RGB: 3 values)
        std=tuple(float(v) for v in preprocess["std"]),  # pyright: ignore[reportArgumentType]
        pooling="model",
        weights=weights,
        summary=f"OpenCLIP {arch} visual tower, {origin}, image embedding, {int(model_cfg['embed_dim'])}-d",
    )


# -- named open_clip entries -----------------------------------------------------------------------------------
# QuiltNet-B-32 (Ikezogwo et al., NeurIPS 2023: CLIP fine-tuned on the Quilt-1M histopathology image-text set).
# From its hub repository wisdomik/QuiltNet-B-32: open_clip_config.json = open_clip's ViT-B-32 (embed_dim 512;
# vision: 224 px, 12 layers, width 768, patch 32; no quick_gelu, so nn.GELU), preprocess_cfg mean/std of OpenAI
# CLIP, open_clip's default bicubic resize; weights open_clip_pytorch_model.bin (the whole CLIP model in open_clip's
# key names: the visual tower is taken, the text tower dropped). Feature: the visual tower's image embedding, 512-d.
# MIT licence, not gated.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_visual_tower(entry: ExtractorEntry, arch: str) -> FeatureModel:
    """The visual tower of open_clip's ``arch`` with random weights (the weight file is loaded over them)."""
    import open_clip

    return FeatureModel(cast(nn.Module, open_clip.create_model(arch, pretrained=None).visual), visual_features)


def unwrap_visual_tower(container: Any, source: str, backbone: nn.Module) -> dict[str, torch.Tensor]:
    """An open_clip checkpoint (the whole model, optionally under ``state_dict`` and with DDP's ``module.``) ->
    the visual tower's state dict; a file of the tower alone is taken as it is."""
    state = container.get("state_dict", container) if isinstance(container, dict) else container
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return state


QUILTNET_B32 = ExtractorEntry(
    family="openclip",
    architecture="openclip:ViT-B-32 (wisdomik/QuiltNet-B-32 open_clip_config.json), visual tower",
    dim=512,
    build_fn=partial(build_visual_tower, arch="ViT-B-32"),
    input_size=224,
    interpolation="bicubic",
    mean=OPENAI_CLIP_MEAN,
    std=OPENAI_CLIP_STD,
    pooling="model",
    weights=(WeightSource("hub", "wisdomik/QuiltNet-B-32", filename="open_clip_pytorch_model.bin"),),
    metadata={"licence": "MIT", "gated": False, "card": "https://huggingface.co/wisdomik/QuiltNet-B-32"},
    unwrap_fn=unwrap_visual_tower,
)
