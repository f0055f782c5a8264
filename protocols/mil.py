"""Attention-based multiple-instance learning (ABMIL) on bags of frozen cell features (one bag per patient):
``abmil-paper`` (the DinoBloom authors' multi-column attention head) and ``abmil-gated`` (Ilse et al. 2018),
trained by one loop with the same hyper-parameters.

The specification (both heads, the training schedule, the validation split, what differs from the authors'
code and why, the outputs) is in docs/protocols.md, section "Multiple-instance learning (ABMIL)".
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from protocols.base import BagPrediction, BagProtocol

if TYPE_CHECKING:
    from torch import nn


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, validation positions) into ``labels``: stratified, drawn with ``seed``, sorted.

    Per class with n_c >= 2 bags: max(1, round(fraction x n_c)) validation bags, at most n_c - 1; a class with
    one bag keeps it for training. ``fraction`` <= 0 gives no validation bags.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0])
    val = []
    if fraction > 0:
        for label in np.unique(labels):  # sorted: the draw does not depend on the order classes first appear
            members = np.flatnonzero(labels == label)
            if len(members) < 2:
                continue
            n_val = min(len(members) - 1, max(1, int(math.floor(fraction * len(members) + 0.5))))
            val.extend(rng.permutation(members)[:n_val].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def _uniform_init(module, generator) -> None:
    """Re-initialise every weight/bias like ``nn.Linear`` does (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), seeded."""
    import torch

    with torch.no_grad():
        for parameter, fan_in in module.fan_ins():
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            parameter.uniform_(-bound, bound, generator=generator)


def _paper_head(dim: int, n_classes: int, attention_dim: int, hidden_dim: int):
    import torch
    from torch import nn

    class PaperHead(nn.Module):
        """Multi-column attention + one small MLP per class (the DinoBloom authors' AML head)."""

        def __init__(self):
            super().__init__()
            self.attention = nn.Sequential(
                nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, n_classes)
            )
            # class c's classifier: Linear(D,hidden) weights w1[c] (D,hidden), b1[c]; Linear(hidden,1) w2[c], b2[c]
            self.w1 = nn.Parameter(torch.empty(n_classes, dim, hidden_dim))
            self.b1 = nn.Parameter(torch.empty(n_classes, 1, hidden_dim))
            self.w2 = nn.Parameter(torch.empty(n_classes, hidden_dim))
            self.b2 = nn.Parameter(torch.empty(n_classes))

        def fan_ins(self):
            first, second = self.attention[0], self.attention[2]
            return [(first.weight, dim), (first.bias, dim), (second.weight, attention_dim),
                    (second.bias, attention_dim), (self.w1, dim), (self.b1, dim), (self.w2, hidden_dim),
                    (self.b2, hidden_dim)]

        def forward(self, x):  # x: (n_cells, D)
            weights = torch.softmax(self.attention(x), dim=0)  # (n, C), each column sums to 1 over the cells
            pooled = weights.t() @ x  # (C, D)
            hidden = torch.relu(torch.baddbmm(self.b1, pooled.unsqueeze(1), self.w1))  # (C, 1, hidden)
            logits = (hidden.squeeze(1) * self.w2).sum(dim=1) + self.b2  # (C,)
            return logits, weights

    return PaperHead()


def _gated_head(dim: int, n_classes: int, attention_dim: int):
    import torch
    from torch import nn

    class GatedHead(nn.Module):
        """Gated attention (Ilse et al. 2018): softmax(w(tanh(V x) * sigmoid(U x))), pooled, Linear(D, C)."""

        def __init__(self):
            super().__init__()
            self.vu = nn.Linear(dim, 2 * attention_dim)  # rows [:L] = V, rows [L:] = U
            self.w = nn.Linear(attention_dim, 1)
            self.classifier = nn.Linear(dim, n_classes)

        def fan_ins(self):
            return [(self.vu.weight, dim), (self.vu.bias, dim), (self.w.weight, attention_dim),
                    (self.w.bias, attention_dim), (self.classifier.weight, dim), (self.classifier.bias, dim)]

        def forward(self, x):  # x: (n_cells, D)
            v, u = self.vu(x).split(attention_dim, dim=1)
            scores = self.w(torch.tanh(v) * torch.sigmoid(u)).squeeze(1)  # (n,)
            weights = torch.softmax(scores, dim=0)
            logits = self.classifier(weights @ x)  # (C,)
            return logits, weights

    return GatedHead()


def standardization(bags: list, index: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) such that ``(x - shift) * scale`` has mean 0 and std 1 per feature over all cells of
    ``bags[i]`` for i in ``index`` (float64 statistics). A feature constant over those cells gets scale 0: it
    carries nothing the model could learn, and is set to 0 everywhere. No bags: shift 0, scale 1."""
    if len(index) == 0:
        return np.zeros(dim), np.ones(dim)
    cells = np.concatenate([np.asarray(bags[i], dtype=np.float64) for i in index.tolist()])
    shift, std = cells.mean(axis=0), cells.std(axis=0)
    constant = cells.max(axis=0) == cells.min(axis=0)
    scale = np.zeros(dim)
    scale[~constant] = 1.0 / std[~constant]
    return shift, scale


def _standardized(head, shift: np.ndarray, scale: np.ndarray):
    import torch
    from torch import nn

    class Standardized(nn.Module):
        """``head((x - shift) * scale)``: the model maps raw cell features; shift/scale are buffers (saved and
        restored with the state dict)."""

        def __init__(self):
            super().__init__()
            self.head = head
            self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

        def forward(self, x):
            return self.head((x - self.shift) * self.scale)

    return Standardized()


@dataclass
class FitResult:
    """What one training run did (``ABMILProtocol.fit``): the model holds the restored best state; with
    ``standardize`` it is the head wrapped with the training cells' statistics (``model.head``, ``model.shift``,
    ``model.scale``) and, either way, maps raw cell features to (logits, attention)."""

    model: nn.Module
    train_index: np.ndarray  # positions into the training bags actually trained on
    val_index: np.ndarray  # positions held out for early stopping (empty: no early stopping)
    train_losses: list[float] = field(default_factory=list)  # mean training loss per epoch run
    val_losses: list[float] = field(default_factory=list)  # mean validation loss per epoch run
    best_epoch: int | None = None  # 0-based epoch whose weights were restored (None: last epoch kept)
    epochs_run: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ABMILProtocol(BagProtocol):
    """Shared training loop and hyper-parameters of the ABMIL heads; subclasses build the head."""

    attention_dim: int = 128
    epochs: int = 150
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine (over `epochs`, per epoch) | constant
    patience: int = 20  # epochs without a strict improvement of the validation loss before stopping
    val_fraction: float = 0.2
    # standardise every feature with the mean and std over the cells of the bags trained on (a deviation from
    # the authors' code, see docs/protocols.md); False reproduces the authors' raw features
    standardize: bool = True

    head = "abstract"  # class attribute, recorded by settings()

    def settings(self) -> dict:
        return {"head": self.head, **super().settings()}

    @abstractmethod
    def build(self, dim: int, n_classes: int) -> nn.Module:
        """The head (an ``nn.Module``) for features of ``dim`` and ``n_classes`` outputs."""

    def _lr(self, epoch: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        if self.schedule == "constant":
            return self.lr
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")

    def fit(
        self,
        train_bags: list[np.ndarray],
        train_labels: np.ndarray,
        n_classes: int,
        seed: int,
        on_epoch: Callable[[int, object, float | None], None] | None = None,
    ) -> FitResult:
        """Train one model; ``on_epoch(epoch, model, val_loss)`` is called after every epoch (for inspection)."""
        import torch
        import torch.nn.functional as F

        bags = _as_tensors(train_bags)
        labels = np.asarray(train_labels, dtype=np.int64)
        if len(bags) != len(labels):
            raise ValueError(f"{len(bags)} training bags but {len(labels)} labels")
        if len(bags) == 0:
            raise ValueError("no training bags")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"training labels must lie in 0..{n_classes - 1}, got {sorted(set(labels.tolist()))}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        self._lr(0)  # validates the schedule name before training
        dim = bags[0].shape[1]
        targets = torch.from_numpy(labels).view(-1, 1)  # targets[i]: shape (1,), no allocation per step

        train_idx, val_idx = validation_split(labels, self.val_fraction, seed)
        notes = []
        if len(val_idx) == 0:
            notes.append(
                f"no validation bags could be drawn ({len(labels)} training bags, val_fraction {self.val_fraction}):"
                f" trained {self.epochs} epochs without early stopping, last state used"
            )
        else:
            counts = np.bincount(labels, minlength=n_classes)
            single = [int(c) for c in np.flatnonzero(counts == 1)]
            if single:
                notes.append(f"class(es) {single} have a single training bag: none of them in the validation split")

        generator = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG: undo it
            model = self.build(dim, n_classes)
        _uniform_init(model, generator)
        if self.standardize:
            model = _standardized(model, *standardization(bags, train_idx, dim))
        optimizer = torch.optim.SGD(
            model.parameters(), lr=self._lr(0), momentum=self.momentum, nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )
        shuffle = np.random.default_rng([int(seed), 1])
        result = FitResult(model, train_idx, val_idx, notes=notes)
        best_loss, best_state, waited = math.inf, None, 0
        for epoch in range(self.epochs):
            for group in optimizer.param_groups:
                group["lr"] = self._lr(epoch)
            model.train()
            total = torch.zeros(())
            for i in shuffle.permutation(train_idx).tolist():
                optimizer.zero_grad(set_to_none=True)
                logits, _ = model(bags[i])
                loss = F.cross_entropy(logits.unsqueeze(0), targets[i])
                loss.backward()
                optimizer.step()
                total += loss.detach()
            result.train_losses.append(float(total) / len(train_idx))
            result.epochs_run = epoch + 1
            val_loss = None
            if len(val_idx):
                val_loss = _mean_loss(model, bags, targets, val_idx)
                result.val_losses.append(val_loss)
            if on_epoch is not None:
                on_epoch(epoch, model, val_loss)
            if val_loss is None:
                continue
            if val_loss < best_loss:
                best_loss, waited, result.best_epoch = val_loss, 0, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= self.patience:
                    break
        if len(val_idx):
            if best_state is None:  # the validation loss was never finite
                notes.append("the validation loss was never finite: last state used")
            else:
                model.load_state_dict(best_state)
        model.eval()
        return result

    def fit_predict_bags(self, train_bags, train_labels, test_bags, n_classes, seed) -> BagPrediction:
        import torch

        fitted = self.fit(train_bags, train_labels, n_classes, seed)
        model = fitted.model
        tests = _as_tensors(test_bags)
        dim = np.asarray(train_bags[0]).shape[1]
        if tests and tests[0].shape[1] != dim:
            raise ValueError(f"test bags have dim {tests[0].shape[1]}, training bags {dim}")
        logits, attention = [], []
        with torch.inference_mode():
            for x in tests:
                out, weights = model(x)
                logits.append(out)
                attention.append(weights.numpy().astype(np.float64))
        logits = torch.stack(logits).double() if logits else torch.zeros((0, n_classes), dtype=torch.float64)
        proba = torch.softmax(logits, dim=1).numpy()
        return BagPrediction(
            labels=proba.argmax(axis=1).astype(np.int64), proba=proba, attention=attention, notes=fitted.notes
        )


def _as_tensors(bags: list[np.ndarray]):
    import torch

    tensors = []
    for i, bag in enumerate(bags):
        array = np.ascontiguousarray(bag, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"bag {i} must be a non-empty (n_cells, dim) array, got shape {array.shape}")
        if tensors and array.shape[1] != tensors[0].shape[1]:
            raise ValueError(f"bag {i} has dim {array.shape[1]}, bag 0 has {tensors[0].shape[1]}")
        tensors.append(torch.from_numpy(array))
    return tensors


def _mean_loss(model, bags, targets, index) -> float:
    import torch
    import torch.nn.functional as F

    model.eval()
    total = 0.0
    with torch.inference_mode():
        for i in index.tolist():
            logits, _ = model(bags[i])
            total += float(F.cross_entropy(logits.unsqueeze(0), targets[i]))
    return total / len(index)


@dataclass(frozen=True)
class PaperABMIL(ABMILProtocol):
    """The DinoBloom authors' head: per-class attention columns, one Linear-ReLU-Linear per class."""

    classifier_hidden: int = 64
    head = "multi-column attention, per-class MLP (DinoBloom)"

    def build(self, dim: int, n_classes: int):
        return _paper_head(dim, n_classes, self.attention_dim, self.classifier_hidden)


@dataclass(frozen=True)
class GatedABMIL(ABMILProtocol):
    """Gated attention (Ilse et al. 2018), one attention column, linear classifier; same training as the paper."""

    head = "gated attention, linear classifier (Ilse et al. 2018)"

    def build(self, dim: int, n_classes: int):
        return _gated_head(dim, n_classes, self.attention_dim)


ABMIL_PAPER = PaperABMIL()
ABMIL_GATED = GatedABMIL()
