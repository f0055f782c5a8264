"""Student and teacher of the DinoBloom trainer: a timm ViT backbone (the extractors' definition) with a mask
token for iBOT, a DINO head and a separate iBOT head, and the export to DinoBloom's checkpoint format.

Heads (DINOv2's ``DINOHead``): MLP Linear(D, hidden) - GELU - Linear(hidden, hidden) - GELU -
Linear(hidden, bottleneck), L2-normalisation, then a weight-normalised Linear(bottleneck, prototypes, bias=False)
whose norm (``weight_g``) starts at 1 and is trained, as in DINOv2's ``dinov2/layers/dino_head.py`` (unlike DINO
v1's ``norm_last_layer``, DINOv2 does not freeze it). The weight-normalised layer is written out (``WeightNormLinear``)
rather than taken from ``torch.nn.utils.parametrizations.weight_norm`` so that its parameters carry the
published key names ``last_layer.weight_g`` / ``last_layer.weight_v``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import UsageError
from extractors.vit import ViTSpec

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


class WeightNormLinear(nn.Module):
    """y = x W^T with W = g * v / ||v|| (row-wise), no bias; ``weight_g`` starts at 1 and is trainable (DINOv2)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = nn.Parameter(torch.ones(out_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * F.normalize(self.weight_v, dim=1)
        return F.linear(x, weight)


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, eps=1e-6))


class Backbone(nn.Module):
    """A timm ViT with a learnable mask token replacing masked patch embeddings (DINOv2's
    ``prepare_tokens_with_masks``). Returns the final normed tokens (B, 1 + N, D)."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, vit.embed_dim))

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        vit = self.vit
        x = vit.patch_embed(images)  # (B, N, D)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = vit._pos_embed(x)
        x = vit.norm_pre(vit.patch_drop(x))
        x = vit.blocks(x)
        return vit.norm(x)


class Student(nn.Module):
    """Backbone + heads; ``forward`` gives what the losses need for a batch of global crops."""

    def __init__(self, backbone: Backbone, out_dim: int, hidden_dim: int, bottleneck_dim: int):
        super().__init__()
        dim = backbone.vit.embed_dim
        self.backbone = backbone
        self.dino_head = DINOHead(dim, out_dim, hidden_dim, bottleneck_dim)
        self.ibot_head = DINOHead(dim, out_dim, hidden_dim, bottleneck_dim)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None):
        tokens = self.backbone(images, masks)
        cls, patches = tokens[:, 0], tokens[:, self.backbone.vit.num_prefix_tokens :]
        cls_logits = self.dino_head(cls)
        # the iBOT head runs even on zero masked patches, so that every DDP rank uses the same parameters
        patch_logits = self.ibot_head(patches[masks]) if masks is not None else None
        return cls, cls_logits, patch_logits


def build_student_teacher(architecture: ViTSpec, out_dim: int, hidden_dim: int, bottleneck_dim: int,
                          init_state: dict | None = None, seed: int = 0,
                          drop_path_rate: float = 0.0) -> tuple[Student, Student]:
    """Student and teacher with identical starting weights; ``init_state``: a timm-format backbone state dict
    (e.g. a DINOv2 checkpoint through ``extractors.dinov2.unwrap_dinov2``), loaded strictly.

    ``drop_path_rate``: stochastic depth of the student only, the same rate in every block (DINOv2's
    ``drop_path_uniform: true``; its teacher is built without drop path). Parameter-free, so exports and
    checkpoints do not change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = architecture.create()
        if init_state is not None:
            from extractors.weights import load_strict

            load_strict(vit, init_state, "the initial checkpoint")
        student = Student(Backbone(vit), out_dim, hidden_dim, bottleneck_dim)
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    if drop_path_rate:
        set_uniform_drop_path(student.backbone.vit, drop_path_rate)
    return student, teacher


def set_uniform_drop_path(vit: VisionTransformer, rate: float) -> None:
    """Every residual branch of every block dropped with probability ``rate`` per sample (timm ``DropPath``);
    timm's constructor argument spreads the rate linearly over depth instead, hence set here."""
    from timm.layers import DropPath  # pyright: ignore[reportPrivateImportUsage]  # timm's public path (no __all__)

    if not 0.0 <= rate < 1.0:
        raise UsageError(f"drop_path_rate must be in [0, 1), got {rate}")
    for block in vit.blocks:
        for name in ("drop_path1", "drop_path2"):
            if not hasattr(block, name):
                raise ValueError(f"{type(block).__name__} has no {name}: cannot set stochastic depth")
            setattr(block, name, DropPath(rate) if rate > 0 else nn.Identity())


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher = momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    t_params: list[torch.Tensor] = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    # (torch's foreach ops, which its optimizers use, are not in its __all__)
    torch._foreach_mul_(t_params, momentum)  # pyright: ignore[reportPrivateImportUsage]
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)  # pyright: ignore[reportPrivateImportUsage]


def teacher_export_state(teacher: Student) -> dict[str, torch.Tensor]:
    """``{"backbone.<DINOv2 key>", "dino_head.*", "ibot_head.*"}`` exactly as in the DinoBloom files."""
    out = {}
    for key, value in teacher.backbone.vit.state_dict().items():
        key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.") if _is_swiglu(teacher) else key
        out[f"backbone.{key}"] = value.detach().clone().cpu()
    out["backbone.mask_token"] = teacher.backbone.mask_token.detach().clone().cpu()
    for head in ("dino_head", "ibot_head"):
        for key, value in getattr(teacher, head).state_dict().items():
            out[f"{head}.{key}"] = value.detach().clone().cpu()
    return out


def _is_swiglu(model: Student) -> bool:
    """ViT-g's packed SwiGLU MLP (timm GluMlp) is stored as mlp.w12/mlp.w3 in DINOv2/DinoBloom files."""
    from timm.layers import GluMlp  # pyright: ignore[reportPrivateImportUsage]  # timm's public path (no __all__)

    return any(isinstance(m, GluMlp) for m in model.backbone.vit.modules())


def param_groups(student: Student, patch_embed_lr_mult: float = 0.2) -> list[dict]:
    """AdamW groups with DINOv2's rule (``dinov2/utils/param_groups.py``): no weight decay where the name ends in
    ``.bias`` or contains ``norm`` or ``gamma`` (layer scale); everything else decays, the position embedding
    and the class and mask tokens included; patch embedding at ``patch_embed_lr_mult`` x lr; the heads' last
    layers flagged (frozen during the first epoch). DinoBloom sets no layer-wise lr decay (1.0)."""
    groups: dict[tuple, dict] = {}
    for name, parameter in student.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = name.endswith(".bias") or "norm" in name or "gamma" in name
        key = (not no_decay, "patch_embed" in name, "last_layer" in name)
        group = groups.setdefault(key, {"params": [], "wd_multiplier": 1.0 if key[0] else 0.0,
                                        "lr_multiplier": patch_embed_lr_mult if key[1] else 1.0,
                                        "is_last_layer": key[2]})
        group["params"].append(parameter)
    return list(groups.values())

