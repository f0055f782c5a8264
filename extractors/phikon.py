"""Phikon (Owkin): a ViT-B/16 at 224 px pretrained with iBOT on histology, as a transformers ``ViTModel``.

The architecture is built from a ``ViTConfig`` equal to the published ``owkin/phikon`` config (hidden 768, 12
layers, 12 heads, MLP 3072, patch 16, image 224, ``qkv_bias=True``, ``layer_norm_eps=1e-6``: the hub config
was changed from transformers' default 1e-12 to iBOT's 1e-6 in owkin/phikon discussion #1, merged by Owkin as
commit 1a3b784; the weights were trained with 1e-6), with ``add_pooling_layer=False`` and PyTorch SDPA
attention where the installed transformers offers it. Nothing is fetched from the hub at build time and no
remote code is run.

Feature: the CLS token of ``last_hidden_state``, i.e. after the model's final layernorm; the pooler of the
published file is not used (other token poolings, ``mean`` / ``cls+mean``, are available through the entry).
Preprocessing: Phikon's processor values, which are ImageNet mean/std at 224 px, bilinear resize to 224 x 224.

Weight files accepted (``.bin`` / ``.pth`` pickles read with ``weights_only=True``, or ``.safetensors``), as a
flat state dict or nested under ``state_dict`` / ``model``:

- the published transformers-4 ``ViTModel`` file (``pytorch_model.bin`` / ``model.safetensors``), key names
  such as ``encoder.layer.0.attention.attention.query.weight``; they are mapped to the names of the installed
  transformers (transformers 5 renamed them, e.g. ``layers.0.attention.q_proj.weight``);
- a file with the installed transformers' own ``ViTModel`` names;
- either of the above with a leading ``vit.`` (``ViTForImageClassification`` files), whose ``classifier.*``
  head is dropped.

``pooler.*`` is dropped (the published file has a pooler; the feature does not use it). Every other key must
fit the architecture exactly: anything missing or unexpected is listed by the strict load.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import torch
from torch import nn

from bench.core.errors import WeightsError
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, ExtractorEntry, FeatureModel, WeightSource

# owkin/phikon config.json (main, after discussion #1); everything else is ViTConfig's default.
PHIKON_CONFIG: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-6,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "encoder_stride": 16,
}

# Inside one encoder layer: transformers-4 name -> transformers-5 name (prefix of the key after the layer index).
_LAYER_NAMES_V4_TO_V5 = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("layernorm_before.", "layernorm_before."),
    ("layernorm_after.", "layernorm_after."),
)
_V4_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_V5_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")


def v4_name(key: str) -> str:
    """A ViTModel key in the transformers-4 spelling (the published file's); other keys are returned as they are."""
    match = _V5_LAYER.match(key)
    if match:
        index, rest = match.groups()
        for old, new in _LAYER_NAMES_V4_TO_V5:
            if rest.startswith(new):
                return f"encoder.layer.{index}.{old}{rest[len(new):]}"
    return key


def vit_config(**overrides: Any):
    """``ViTConfig`` with Phikon's values (``overrides`` replace them), SDPA attention where supported."""
    from transformers import ViTConfig

    from extractors.hf import sdpa_config

    return sdpa_config(ViTConfig, {**PHIKON_CONFIG, **overrides})


def build_phikon(entry: ExtractorEntry) -> FeatureModel:
    from transformers import ViTModel

    from extractors.hf import hf_patch_tokens, hf_token_features

    backbone = ViTModel(vit_config(), add_pooling_layer=False)
    return FeatureModel(backbone, partial(hf_token_features, pooling=entry.pooling, num_prefix_tokens=1),
                        hf_patch_tokens)


def unwrap_phikon(container: Any, source: str, backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A Phikon / ViTModel file (formats in the module docstring) -> the installed ``ViTModel``'s state dict."""
    if not isinstance(container, dict):
        raise WeightsError(f"{source} does not hold a state dict")
    state: dict[str, Any] = container
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    non_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if non_tensors:
        raise WeightsError(f"{source} is not a flat state dict: {non_tensors[:10]} are not tensors")

    prefixed = any(k.startswith("vit.") for k in state)
    if prefixed:  # ViTForImageClassification: the backbone under vit., a classification head beside it
        state = {k: v for k, v in state.items() if k not in ("classifier.weight", "classifier.bias")}
        state = {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("pooler.")}

    # the installed names, keyed by their transformers-4 spelling; unknown keys stay as they are (load_strict lists them)
    installed = {v4_name(own): own for own in backbone.state_dict()}
    return {installed.get(v4_name(k), k): v for k, v in state.items()}


PHIKON = ExtractorEntry(
    family="phikon",
    architecture="transformers:ViTModel/vit-base-patch16-224",
    dim=768,
    build_fn=build_phikon,
    input_size=224,
    interpolation="bilinear",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    pooling="cls",
    weights=(WeightSource("hub", "owkin/phikon"),),
    unwrap_fn=unwrap_phikon,
)


# Phikon-v2 (Owkin; Filiot et al. 2024): a DINOv2 ViT-L/16 as a transformers Dinov2Model. Card and hub files of
# owkin/phikon-v2: config.json (model_type dinov2, hidden 1024, 24 layers, 16 heads, patch 16, no SwiGLU),
# model.safetensors (transformers-4 names), preprocessor_config.json (shortest edge 224, bicubic, centre crop 224,
# ImageNet mean/std); the feature is the CLS token of last_hidden_state, 1024-d (extractors/hf_dinov2.py loads it).
PHIKON_V2_CONFIG = (("hidden_size", 1024), ("num_hidden_layers", 24), ("num_attention_heads", 16),
                    ("patch_size", 16), ("image_size", 224), ("use_swiglu_ffn", False))


def _phikon_v2() -> ExtractorEntry:
    from extractors.hf_dinov2 import dinov2_entry
    from extractors.timm_hub import hub_card

    return dinov2_entry("phikon", PHIKON_V2_CONFIG, 1024,
                        hub_card("owkin/phikon-v2", "model.safetensors",
                                 "Owkin non-commercial (LICENSE.pdf on the card)", gated=None,
                                 revision="2ae989a9c40cffaa27f0a6cb29cc94d1d6f9a5fd"),
                        interpolation="bicubic")


PHIKON_V2 = _phikon_v2()
