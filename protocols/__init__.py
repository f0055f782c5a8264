"""Protocol registry: evaluation protocols by name.

Built-in protocols are lazy ``module:attr`` targets (listing them imports no model code); your own come as
``--protocol path/to/file.py:NAME`` or through the entry-point group ``hemabench.protocols`` (see
docs/protocols.md: a new protocol in one file). A target is a :class:`protocols.base.Protocol` instance or a
zero-argument factory returning one. The summary registered here is the one ``bench list`` shows and the result
files record.
"""

from __future__ import annotations

from bench.core.registry import Registry

PROTOCOLS: Registry = Registry(
    "protocol", base="protocols.base:Protocol", entry_point_group="hemabench.protocols", allow_files=True
)
register_protocol = PROTOCOLS.register

for _name, _target, _summary in [
    ("knn-1", "protocols.knn:KNN_1", "1-NN, Euclidean, unnormalised features (the paper)"),
    ("knn-20", "protocols.knn:KNN_20", "20-NN, Euclidean, uniform votes, unnormalised features (the paper)"),
    ("knn-cosine", "protocols.knn:KNN_COSINE",
     "20-NN on L2-normalised features, cosine, exp(sim/0.07)-weighted votes (DINOv2's kNN)"),
    ("linear", "protocols.linear:LINEAR",
     "multinomial logistic regression, L-BFGS, C = dim x classes / 100, no scaling (the paper)"),
    ("linear-std", "protocols.linear:LINEAR_STD", "as `linear`, with features standardised on the training fold"),
    ("abmil-paper", "protocols.mil:ABMIL_PAPER",
     "bags: per-class attention MIL + per-class MLP, SGD Nesterov 150 epochs, cosine, early stopping (DinoBloom AML head)"),
    ("abmil-gated", "protocols.mil:ABMIL_GATED",
     "bags: gated-attention MIL (Ilse et al. 2018), linear classifier; same training as abmil-paper"),
    ("fewshot-simpleshot", "protocols.fewshot:FEWSHOT_SIMPLESHOT",
     "few-shot: n = 1, 2, 4 ... 128 labelled cells per class, 100 seeded episodes each; SimpleShot (centred, "
     "L2-normalised nearest centroid); mean over n, the curve on the board"),
    ("fewshot-linear", "protocols.fewshot:FEWSHOT_LINEAR",
     "few-shot as fewshot-simpleshot, with the paper's linear probe (logistic regression, C = dim x classes / 100)"),
    ("robustness", "protocols.robustness:ROBUSTNESS",
     "task TASK@perturbation=all: the linear probe trained on clean cells, tested clean and under stain, blur, JPEG "
     "and rescaling; weighted F1 perturbed (main), its drop, and each cell's feature cosine to its clean one"),
    ("robustness-index", "protocols.robustness:ROBUSTNESS_INDEX_PROTOCOL",
     "data sets from different sites (A+B+C): PathoROB's robustness index, the share of same-class-other-site among "
     "same-class-other-site and other-class-same-site k-NN neighbours (1: by cell type, 0: by site)"),
    ("batch-effect", "protocols.batch_effect:BATCH_EFFECT",
     "data sets side by side (A+B): scIB's domain and class silhouettes and a kNN mixing score, domains balanced "
     "per class"),
]:
    PROTOCOLS.add_lazy(_name, _target, summary=_summary)


def get_protocol(name: str):
    """The protocol for a registered name, an entry point or ``path/to/file.py:NAME``."""
    return PROTOCOLS.get(name)
