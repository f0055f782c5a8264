"""Losses of the DinoBloom trainer (DINOv2 without local crops): DINO CLS loss, iBOT masked-patch loss, KoLeo.

Semantics follow DINOv2's published code (``dinov2/loss/dino_clstoken_loss.py``, ``ibot_patch_loss.py``,
``koleo_loss.py``); this is a re-implementation. Centering is Sinkhorn-Knopp (3 iterations), as DinoBloom's
config (``train.centering: sinkhorn_knopp``) selects; the softmax-centering variant is not provided.

How the trainer wires them (mirrors DINOv2's ``SSLMetaArch`` with ``n_local_crops = 0``)::

    # teacher side, under torch.no_grad(); teacher_cls: (2*B, K) = both global crops, crop-major
    t = sinkhorn_knopp(teacher_cls_logits, teacher_temp)            # SK over both crops together (2*B rows)
    t0, t1 = t.chunk(2)
    dino = dino_loss([s_cls_crop0, s_cls_crop1], [t0, t1])          # pairs (0,1), (1,0): crop A vs crop B
    # masks: (2*B, P) bool; teacher_patch_logits: (2*B, P, K_ibot)
    t_patch = sinkhorn_knopp(teacher_patch_logits[masks], teacher_temp)   # (M, K_ibot), M = masks.sum()
    ibot = ibot_loss(student_patch_logits, t_patch, masks)          # student_patch_logits: (2*B, P, K_ibot)
    koleo = 0.1 * sum(koleo_loss(c) for c in student_backbone_cls.chunk(2))   # per crop, pre-head CLS
    loss = dino + ibot + koleo

All reductions that DINOv2 makes across ranks happen here when ``torch.distributed.is_initialized()``
(only inside Sinkhorn-Knopp); the loss values themselves are local to each rank, as in DINOv2 (DDP/FSDP
average the gradients).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["sinkhorn_knopp", "DINOLoss", "IBOTPatchLoss", "KoLeoLoss"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _at_least_f32(t: Tensor) -> Tensor:
    """float32 for half/bfloat16/float32 inputs; float64 stays float64."""
    return t if t.dtype == torch.float64 else t.float()


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """Sinkhorn-Knopp teacher targets: (B, K) logits -> (B, K) assignments whose rows sum to 1.

    ``Q = exp(logits / temp)`` scaled to total mass 1, then ``n_iterations`` times: every prototype (column)
    to mass 1/K, then every sample (row) to mass 1/B; finally ``Q * B`` so each row is a distribution.
    After convergence every column sums to B/K (equal use of prototypes).

    Distributed: B is the global number of rows (all-reduced sum of the local row counts, so ranks may hold
    different numbers of rows, e.g. masked patches for iBOT) and the total mass and the per-prototype sums are
    all-reduced; rows are local, so row normalisation needs no communication. Every rank must call it.

    Differences from DINOv2's ``sinkhorn_knopp_teacher`` that do not change the result: the logits are shifted
    by their global maximum before ``exp`` (an overall factor, removed by the first normalisation; it avoids
    overflow at temperature 0.04 and makes the result exactly invariant to adding a constant); computation is
    in float32 (float64 inputs stay float64). No gradient flows (``torch.no_grad``).
    """
    if teacher_logits.dim() != 2:
        raise ValueError(f"teacher_logits must be (B, K), got shape {tuple(teacher_logits.shape)}")
    logits = _at_least_f32(teacher_logits.detach())
    distributed = _distributed()
    n_local, K = logits.shape
    B = torch.tensor(float(n_local), dtype=logits.dtype, device=logits.device)
    shift = logits.max() if n_local > 0 else torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    if distributed:
        dist.all_reduce(B)
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    if B.item() == 0:
        return logits.clone()  # nothing to assign on any rank
    Q = torch.exp((logits - shift) / teacher_temp)

    total = Q.sum()
    if distributed:
        dist.all_reduce(total)
    Q = Q / total
    for _ in range(n_iterations):
        per_prototype = Q.sum(dim=0, keepdim=True)  # (1, K): mass of each prototype
        if distributed:
            dist.all_reduce(per_prototype)
        Q = Q / per_prototype / K
        Q = Q / Q.sum(dim=1, keepdim=True) / B  # each sample -> 1/B
    return Q * B


class DINOLoss(nn.Module):
    """DINO CLS-token loss: cross-entropy of student softmax(s / student_temp) against teacher targets.

    ``forward(student_logits_list, teacher_probs_list)``: lists of per-crop tensors, each (B, out_dim).
    Teacher crop ``j`` and student crop ``j`` are views of the same image crop for ``j < len(teacher)``;
    student crops beyond that (local crops; DinoBloom has none) are compared with every teacher crop.
    The loss is the mean, over all pairs (i, j) with i != j, of the batch-mean of
    ``-sum_k t_jk * log_softmax(s_i / student_temp)_k``. With DinoBloom's two global crops that is
    ``(CE(s0, t1) + CE(s1, t0)) / 2`` -- exactly DINOv2's global-crop term (teacher crops swapped, divided by
    ``n_global_crops_loss_terms = 2``). The same-crop pairs (i == j) are never used.

    Teacher probabilities are detached (no gradient reaches the teacher); build them with
    :func:`sinkhorn_knopp` over both crops concatenated, as DINOv2 does.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1):
        super().__init__()
        self.out_dim = out_dim
        self.student_temp = student_temp

    @torch.no_grad()
    def sinkhorn_knopp_teacher(self, teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
        return sinkhorn_knopp(teacher_logits, teacher_temp, n_iterations)

    def forward(self, student_logits_list: Sequence[Tensor], teacher_probs_list: Sequence[Tensor]) -> Tensor:
        if len(student_logits_list) == 0 or len(teacher_probs_list) == 0:
            raise ValueError("need at least one student crop and one teacher crop")
        total = None
        n_terms = 0
        for i, s in enumerate(student_logits_list):
            if s.shape[-1] != self.out_dim:
                raise ValueError(f"student crop {i} has {s.shape[-1]} logits, expected {self.out_dim}")
            lsm = F.log_softmax(_at_least_f32(s) / self.student_temp, dim=-1)
            for j, t in enumerate(teacher_probs_list):
                if i == j:
                    continue
                if t.shape != s.shape:
                    raise ValueError(f"teacher crop {j} shape {tuple(t.shape)} != student crop {i} {tuple(s.shape)}")
                term = -(t.detach().to(lsm.dtype) * lsm).sum(dim=-1).mean()
                total = term if total is None else total + term
                n_terms += 1
        if total is None:  # (n_terms == 0)
            raise ValueError("no crop pairs with i != j: pass at least two crops")
        return total / n_terms


class IBOTPatchLoss(nn.Module):
    """iBOT masked-patch loss (DINOv2 ``forward_masked``).

    ``forward(student_patch_logits, teacher_probs_masked, masks)``:

    - ``student_patch_logits``: (N, P, patch_out_dim) for every patch of the N images (both crops stacked);
    - ``masks``: (N, P) bool, True where the student's patch was masked;
    - ``teacher_probs_masked``: (M, patch_out_dim), M = ``masks.sum()``, the teacher targets of the masked
      patches in ``tensor[masks]`` order (row-major), i.e. ``sinkhorn_knopp(teacher_patch_logits[masks], temp)``.

    Per masked patch: ``-sum_k t_k log_softmax(s / student_temp)_k``; weighted by 1 / (masked patches of its
    image), summed, divided by N. So each image contributes the mean over its masked patches, and the result is
    the mean over all N images -- images without any masked patch count as 0 in that mean (DINOv2 divides by
    ``masks.shape[0]``; with mask probability 0.5 about half the images are unmasked). Unmasked patches never
    enter the loss. ``forward_masked`` takes the already-selected (M, K) student logits instead.
    """

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1):
        super().__init__()
        self.patch_out_dim = patch_out_dim
        self.student_temp = student_temp

    @torch.no_grad()
    def sinkhorn_knopp_teacher(self, teacher_masked_logits: Tensor, teacher_temp: float,
                               n_iterations: int = 3) -> Tensor:
        """(M, K) teacher logits of the masked patches -> (M, K) targets; B = number of masked patches."""
        return sinkhorn_knopp(teacher_masked_logits, teacher_temp, n_iterations)

    @staticmethod
    def masks_weight(masks: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """(M,) weight of each masked patch: 1 / number of masked patches in its image."""
        masks = masks.bool()
        per_image = masks.sum(dim=-1, keepdim=True).clamp(min=1).to(dtype)
        return (1.0 / per_image).expand_as(masks)[masks]

    def forward_masked(self, student_masked_logits: Tensor, teacher_probs_masked: Tensor, masks: Tensor,
                       masks_weight: Tensor | None = None) -> Tensor:
        masks = masks.bool()
        if masks.dim() != 2:
            raise ValueError(f"masks must be (N, P), got shape {tuple(masks.shape)}")
        n_masked = int(masks.sum())
        if student_masked_logits.shape != (n_masked, self.patch_out_dim):
            raise ValueError(f"student masked logits {tuple(student_masked_logits.shape)} != "
                             f"({n_masked}, {self.patch_out_dim})")
        if teacher_probs_masked.shape != student_masked_logits.shape:
            raise ValueError(f"teacher targets {tuple(teacher_probs_masked.shape)} != "
                             f"student {tuple(student_masked_logits.shape)}")
        lsm = F.log_softmax(_at_least_f32(student_masked_logits) / self.student_temp, dim=-1)
        per_patch = -(teacher_probs_masked.detach().to(lsm.dtype) * lsm).sum(dim=-1)  # (M,)
        if masks_weight is None:
            masks_weight = self.masks_weight(masks, per_patch.dtype)
        return (per_patch * masks_weight.to(per_patch)).sum() / masks.shape[0]

    def forward(self, student_patch_logits: Tensor, teacher_probs_masked: Tensor, masks: Tensor) -> Tensor:
        masks = masks.bool()
        if student_patch_logits.shape[:2] != masks.shape:
            raise ValueError(f"student patch logits {tuple(student_patch_logits.shape)} do not match "
                             f"masks {tuple(masks.shape)}")
        return self.forward_masked(student_patch_logits[masks], teacher_probs_masked, masks)


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko differential-entropy regulariser (DINOv2 ``KoLeoLoss``).

    ``forward(x)``, x: (B, D) student CLS features, B >= 2 (DINOv2 applies it to the backbone CLS token of each
    global crop separately and sums). Features are L2-normalised; for each sample the nearest other sample is
    found by maximum inner product, and ``loss = -mean(log(||x_i - x_nn(i) + eps|| + eps))`` with eps 1e-8
    (the ``+ eps`` inside is ``nn.PairwiseDistance(2, eps=1e-8)``). The weight (0.1) is the caller's.
    Computed in float32 (float64 kept) outside autocast. Unlike DINOv2's diagonal fill of -1, the sample itself
    is excluded with -inf, so an antipodal pair cannot select the sample itself (same result otherwise).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    @staticmethod
    def nearest_neighbours(x: Tensor) -> Tensor:
        """(B,) index of each row's nearest other row, for L2-normalised rows (max inner product)."""
        dots = x @ x.t()
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        return dots.masked_fill(eye, float("-inf")).argmax(dim=1)

    def forward(self, student_output: Tensor) -> Tensor:
        if student_output.dim() != 2 or student_output.shape[0] < 2:
            raise ValueError(f"KoLeo needs (B, D) with B >= 2, got shape {tuple(student_output.shape)}")
        with torch.autocast(device_type=student_output.device.type, enabled=False):
            x = F.normalize(_at_least_f32(student_output), p=2, dim=-1, eps=self.eps)
            with torch.no_grad():
                idx = self.nearest_neighbours(x)
            d = F.pairwise_distance(x, x[idx], p=2, eps=self.eps)
            return -torch.log(d + self.eps).mean()
