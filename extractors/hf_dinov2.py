"""Foundation models published as transformers ``Dinov2Model`` files (Phikon-v2, Midnight): the architecture
built from the card's ``Dinov2Config`` values (nothing fetched, no remote code), the published file loaded
strictly after mapping its key names to the installed transformers'.

The hub files hold transformers-4 names; transformers 5 renamed them (and splits a SwiGLU MLP's fused input
projection) when it loads them with ``from_pretrained``. The mapping is written here because the harness loads
the file into a module it built, strictly, and must accept either spelling:

- ``attention.attention.query|key|value`` -> ``attention.q_proj|k_proj|v_proj``,
  ``attention.output.dense`` -> ``attention.o_proj``;
- SwiGLU: ``mlp.weights_in`` (gate and up projections stacked along the output dim) -> ``mlp.gate_proj`` (first
  half) and ``mlp.up_proj`` (second half); ``mlp.weights_out`` -> ``mlp.down_proj``.

The position grid is the file's own: the module's position embeddings take the shape the file holds, and
``Dinov2Model`` interpolates them to the input at every forward pass, as it does for the published model.
``mask_token`` (training only) may be absent from a file: the module's is kept.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from bench.core.errors import WeightsError
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, ExtractorEntry, FeatureModel

if TYPE_CHECKING:
    from transformers import Dinov2Model

_RENAMES_V4_TO_V5 = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("mlp.weights_out.", "mlp.down_proj."),
)


def build_dinov2(entry: ExtractorEntry, config: tuple[tuple[str, Any], ...]) -> FeatureModel:
    from transformers import Dinov2Config, Dinov2Model

    from extractors.hf import hf_patch_tokens, hf_token_features, sdpa_config

    backbone = Dinov2Model(sdpa_config(Dinov2Config, dict(config)))
    return FeatureModel(backbone, partial(hf_token_features, pooling=entry.pooling, num_prefix_tokens=1),
                        hf_patch_tokens)


def unwrap_dinov2(container: Any, source: str, backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A ``Dinov2Model`` file in transformers-4 or the installed spelling -> the installed module's state dict."""
    state = container.get("state_dict", container) if isinstance(container, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{source} does not hold a flat state dict of tensors")
    _check_config(Path(source).parent / "config.json", backbone.config)
    own = backbone.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".mlp.weights_in." in key and key not in own:  # transformers 5 splits the fused SwiGLU projection
            gate, up = value.chunk(2, dim=0)
            out[key.replace("mlp.weights_in.", "mlp.gate_proj.")] = gate
            out[key.replace("mlp.weights_in.", "mlp.up_proj.")] = up
            continue
        if key not in own:
            for old, new in _RENAMES_V4_TO_V5:
                if old in key and key.replace(old, new) in own:
                    key = key.replace(old, new)
                    break
        out[key] = value
    if "embeddings.mask_token" not in out:  # used in training only; not every published file keeps it
        out["embeddings.mask_token"] = own["embeddings.mask_token"]
    _take_position_grid(cast("Dinov2Model", backbone), out.get("embeddings.position_embeddings"))
    return out


# what a snapshot's config.json must agree on with the entry (the position grid is taken from the file)
_CHECKED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "use_swiglu_ffn", "mlp_ratio",
            "layer_norm_eps", "layerscale_value", "hidden_act", "qkv_bias", "num_channels")


def _check_config(path: Path, config) -> None:
    """A hub snapshot's config.json beside the weights must describe the architecture the entry builds."""
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path} cannot be read ({exc}); fix or remove it") from None
    differ = [f"{k}: {stored[k]!r} in the file, {getattr(config, k)!r} in the entry" for k in _CHECKED
              if k in stored and stored[k] != getattr(config, k)]
    if differ:
        raise WeightsError(f"{path} describes another architecture than this entry ({'; '.join(differ)}); these "
                           "weights are not this model's")


def _take_position_grid(backbone: Dinov2Model, stored: torch.Tensor | None) -> None:
    """Give the module the file's position grid (Dinov2Model interpolates it to the input at each forward)."""
    embeddings = backbone.embeddings
    if stored is None or stored.shape == embeddings.position_embeddings.shape:
        return
    patches = stored.shape[1] - 1
    side = int(round(patches ** 0.5))
    if side * side != patches:
        raise WeightsError(f"position embeddings {tuple(stored.shape)} are not a square grid plus the CLS position")
    device = embeddings.position_embeddings.device
    embeddings.position_embeddings = nn.Parameter(torch.empty(stored.shape, device=device))
    backbone.config.image_size = side * backbone.config.patch_size  # pyright: ignore[reportAttributeAccessIssue]  # (an int)


def dinov2_entry(family: str, config: tuple[tuple[str, Any], ...], dim: int, card, *, pooling: str = "cls",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation: str = "bilinear") -> ExtractorEntry:
    """A ``Dinov2Model`` entry (named where it is registered): the card's config values, its preprocessing and pooling, its weights
    (``card``: :class:`extractors.timm_hub.ModelCard`)."""
    return ExtractorEntry(
        family=family,
        architecture="transformers:Dinov2Model(" + ", ".join(f"{k}={v}" for k, v in config) + ")",
        dim=dim,
        build_fn=partial(build_dinov2, config=config),
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        pooling=pooling,
        weights=(card.source,),
        metadata=card.metadata(),
        unwrap_fn=unwrap_dinov2,
    )
