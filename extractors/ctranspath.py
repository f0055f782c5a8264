"""CTransPath (Wang et al., 2022): a Swin-T with a convolutional patch embedding, pre-trained on histopathology.

Architecture: timm's ``swin_tiny_patch4_window7_224`` (Swin-T, 4 stages of depth 2/2/6/2, window 7, 96 -> 768
channels) whose 4x4 patchify conv is replaced by a ConvStem: two 3x3 stride-2 conv (no bias) + BatchNorm + ReLU
blocks (3 -> 12 -> 24 channels), a 1x1 conv (with bias) to 96 channels, flatten to tokens, LayerNorm(96). timm has
no such stem, so ``ConvStem`` below is written by hand against the installed timm's patch-embed interface.

Published file (``ctranspath.pth`` from the TransPath authors): ``{"model": {...}}``, a state dict in the
timm 0.5.4 Swin layout with the classification head removed. Loading (``unwrap_ctranspath``):

- take ``container["model"]`` (a clear error names the file and its top-level keys otherwise); drop ``head.*``;
- timm's own ``swin_transformer.checkpoint_filter_fn`` converts the layout: timm 0.5.4 downsamples at the END of a
  stage (``layers.{i}.downsample``, stages 0-2), timm 1.x at the START (``layers.{i+1}.downsample``, stages 1-3);
  it also drops the ``attn_mask`` / ``relative_position_index`` buffers (non-persistent in timm 1.x);
- written here: keys the filter would misread are passed through unchanged so that the strict load reports
  them instead (a plain Swin ``patch_embed.proj.weight``, a ``relative_position_bias_table`` of the wrong shape
  or of a block the model lacks: the filter would resample or crash on them), buffer-like keys that are not
  buffers of this backbone are kept (so they surface as unexpected), and the downsample shift is also applied
  when the file is in the old layout but lacks ``layers.0.downsample.reduction.weight`` (the filter's only cue).

Rebuilt, not loaded: every ``attn_mask`` (shifted-window mask) and ``relative_position_index`` comes from the
freshly built backbone (they are functions of the window size and input resolution, not learned). Everything else
is loaded strictly: a missing or unexpected key fails in ``load_strict`` with the key names, in the installed timm
layout (the file's ``layers.{i}.downsample.*`` is reported as ``layers.{i+1}.downsample.*``).

Feature (as the DinoBloom authors used CTransPath): the backbone's final LayerNorm output (``forward_features``,
NHWC in timm 1.x), mean over all 7x7 spatial tokens -> (N, 768). Swin has no CLS token, so only ``pooling="mean"``
is valid. Preprocessing as for every model in the paper: 224 px, bilinear resize, ImageNet mean/std.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import nn

from bench.core.errors import UsageError, WeightsError
from extractors.base import ExtractorEntry, FeatureModel, WeightSource

TIMM_NAME = "swin_tiny_patch4_window7_224"
REBUILT_BUFFERS = ("attn_mask", "relative_position_index")
_OLD_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample")


def _pair(value: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ConvStem(nn.Module):
    """CTransPath's patch embedding, usable as timm's ``embed_layer`` (timm has no ConvStem; written by hand).

    ``proj``: conv3x3/2 (no bias) -> BN -> ReLU -> conv3x3/2 (no bias) -> BN -> ReLU -> conv1x1 (bias), i.e. indices
    0, 1, 3, 4, 6 carry weights, as in the published file; ``norm``: LayerNorm over channels. Takes the keyword
    arguments timm 1.x's SwinTransformer passes to ``embed_layer`` and returns NHWC (``output_fmt='NHWC'``) or,
    with ``output_fmt=None`` and ``flatten=True``, (N, L, C) tokens like timm 0.5.4.
    """

    def __init__(
        self,
        img_size: Optional[Union[int, Tuple[int, int]]] = 224,
        patch_size: Union[int, Tuple[int, int]] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Optional[Union[str, Callable[..., nn.Module]]] = None,
        flatten: bool = True,
        output_fmt: Optional[str] = None,
        strict_img_size: bool = True,
        device=None,
        dtype=None,
        **unused: Any,
    ):
        super().__init__()
        dd: dict[str, Any] = {"device": device, "dtype": dtype}
        self.patch_size = _pair(patch_size)
        if self.patch_size != (4, 4):
            raise ValueError(f"ConvStem downsamples by 4 (two stride-2 convs); patch_size {patch_size} is not 4")
        if embed_dim % 8:
            raise ValueError(f"ConvStem needs embed_dim divisible by 8, got {embed_dim}")
        if output_fmt not in (None, "NHWC", "NCHW", "NLC"):
            raise ValueError(f"ConvStem: unsupported output_fmt {output_fmt!r}")
        self.output_fmt = output_fmt or ("NLC" if flatten else "NCHW")
        self.flatten = self.output_fmt == "NLC"
        self.strict_img_size = strict_img_size
        self.set_input_size(img_size=img_size)

        stem: list[nn.Module] = []
        in_dim, out_dim = in_chans, embed_dim // 8
        for _ in range(2):
            stem += [
                nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1, bias=False, **dd),
                nn.BatchNorm2d(out_dim, **dd),
                nn.ReLU(inplace=True),
            ]
            in_dim, out_dim = out_dim, out_dim * 2
        stem.append(nn.Conv2d(in_dim, embed_dim, kernel_size=1, **dd))
        self.proj = nn.Sequential(*stem)
        if isinstance(norm_layer, str):
            from timm.layers import get_norm_layer  # pyright: ignore[reportPrivateImportUsage]  # timm's public path

            norm_layer = get_norm_layer(norm_layer)
        self.norm = norm_layer(embed_dim, **dd) if norm_layer else nn.Identity()

    def set_input_size(
        self,
        img_size: Optional[Union[int, Tuple[int, int]]] = None,
        patch_size: Optional[Union[int, Tuple[int, int]]] = None,
    ) -> None:
        """timm's PatchEmbed interface (``SwinTransformer.set_input_size``); the patch size is fixed at 4."""
        if patch_size is not None and _pair(patch_size) != self.patch_size:
            raise ValueError(f"ConvStem cannot change its patch size to {patch_size} (fixed at 4)")
        if img_size is None:
            img_size = getattr(self, "img_size", None)
        if img_size is None:
            self.img_size = self.grid_size = self.num_patches = None
            return
        self.img_size = _pair(img_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self, as_scalar: bool = True):
        return max(self.patch_size) if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        return img_size[0] // self.patch_size[0], img_size[1] // self.patch_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        if self.img_size is not None:
            if self.strict_img_size and (height, width) != self.img_size:
                expected = f"{self.img_size[0]}x{self.img_size[1]}"
                raise ValueError(f"input {height}x{width} does not match the model's {expected}")
            if height % 4 or width % 4:
                raise ValueError(f"input {height}x{width} must be divisible by the patch size 4")
        x = self.proj(x)  # (N, C, H/4, W/4)
        if self.output_fmt == "NCHW":  # LayerNorm over channels, then back to NCHW
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x.permute(0, 2, 3, 1)  # NHWC
        if self.flatten:
            x = x.flatten(1, 2)  # (N, L, C), as timm 0.5.4's flatten(2).transpose(1, 2)
        return self.norm(x)


def mean_token_features(backbone: Any, images: torch.Tensor) -> torch.Tensor:  # backbone: a timm model
    """Final normed tokens (NHWC in timm 1.x, (N, L, C) in older timm) -> mean over all positions -> (N, C)."""
    tokens = backbone.forward_features(images)
    return tokens.flatten(1, -2).mean(dim=1)


def build_ctranspath(entry: ExtractorEntry) -> FeatureModel:
    if entry.pooling != "mean":
        raise UsageError(
            f"extractor {entry.name!r}: pooling {entry.pooling!r} does not apply to CTransPath (a Swin has no CLS "
            "token); use pooling='mean' (the mean of the final normed tokens)"
        )
    import timm

    backbone = timm.create_model(
        TIMM_NAME, pretrained=False, num_classes=0, img_size=entry.input_size, embed_layer=ConvStem
    )
    return FeatureModel(backbone, mean_token_features)


def _owner(backbone: nn.Module, key: str) -> tuple[Optional[nn.Module], str]:
    path, _, name = key.rpartition(".")
    try:
        return backbone.get_submodule(path), name
    except AttributeError:
        return None, name


def _is_rebuilt_buffer(backbone: nn.Module, key: str) -> bool:
    """``key`` names an attn_mask / relative_position_index buffer that this backbone has (and rebuilds)."""
    module, name = _owner(backbone, key)
    return name in REBUILT_BUFFERS and module is not None and name in module._buffers


def _filter_would_misread(backbone: nn.Module, key: str, value: torch.Tensor) -> bool:
    """Keys timm's checkpoint_filter_fn would crash on, resample or drop silently: keep them for load_strict."""
    if any(name in key for name in REBUILT_BUFFERS):
        return not _is_rebuilt_buffer(backbone, key)
    if "patch_embed.proj.weight" in key:  # a plain Swin patchify conv: ConvStem has no proj.weight
        return True
    if key.endswith("relative_position_bias_table"):
        module, name = _owner(backbone, key)
        table = getattr(module, name, None) if module is not None else None
        return not isinstance(table, torch.Tensor) or tuple(table.shape) != tuple(value.shape)
    return False


def unwrap_ctranspath(container: Any, source: str, backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The published ``{"model": {...}}`` (timm 0.5.4 layout) -> the state dict of the timm 1.x backbone."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    if not isinstance(container, dict) or not isinstance(container.get("model"), dict):
        top = list(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise WeightsError(
            f"{source} is not a CTransPath checkpoint: expected {{'model': {{state dict}}}} as published by the "
            f"TransPath authors, found top-level keys {top}"
        )
    state = {k: v for k, v in container["model"].items() if not k.startswith("head.")}
    kept = {k: v for k, v in state.items() if _filter_would_misread(backbone, k, v)}
    converted = checkpoint_filter_fn({k: v for k, v in state.items() if k not in kept}, backbone)
    # checkpoint_filter_fn only recognises the old layout by layers.0.downsample.reduction.weight; a file that
    # lacks that key but has the rest of layers.0.downsample.* is still in the old layout: shift it here.
    if "layers.0.downsample.reduction.weight" not in state and any(
        k.startswith("layers.0.downsample.") for k in converted
    ):
        converted = {
            _OLD_DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k): v
            for k, v in converted.items()
        }
    converted.update(kept)
    # Rebuilt buffers: non-persistent in timm 1.x (absent from state_dict()); where a timm version keeps them
    # persistent, take the fresh backbone's own values rather than the file's.
    for key, value in backbone.state_dict().items():
        if key.rpartition(".")[2] in REBUILT_BUFFERS:
            converted[key] = value
    return converted


CTRANSPATH = ExtractorEntry(
    family="ctranspath",
    architecture=f"timm:{TIMM_NAME}+convstem",
    dim=768,
    build_fn=build_ctranspath,
    input_size=224,
    interpolation="bilinear",
    pooling="mean",
    supports_cls=False,
    weights=(
        WeightSource(
            "file",
            "ctranspath.pth from the TransPath authors "
            "(github.com/Xiyue-Wang/TransPath, Google Drive link in its README)",
        ),
    ),
    unwrap_fn=unwrap_ctranspath,
)
