"""Protocol registry: evaluation protocols by name (lazy targets; third parties: entry-point group
``hemabench.protocols``)."""

from __future__ import annotations

from bench.registry import Registry

PROTOCOLS: Registry = Registry("protocol", entry_point_group="hemabench.protocols")
register_protocol = PROTOCOLS.register

for _name, _target, _summary in [
    ("knn-1", "bench.protocols.knn:KNN_1", "1-NN, Euclidean, unnormalised features (the paper)"),
    ("knn-20", "bench.protocols.knn:KNN_20", "20-NN, Euclidean, uniform votes, unnormalised (the paper)"),
    ("knn-cosine", "bench.protocols.knn:KNN_COSINE", "20-NN cosine, exp(sim/0.07)-weighted votes (DINOv2's kNN)"),
    ("linear", "bench.protocols.linear:LINEAR", "logistic regression, L-BFGS, C = dim x classes / 100 (the paper)"),
    ("linear-std", "bench.protocols.linear:LINEAR_STD", "as linear, features standardised on the training fold"),
    ("abmil-paper", "bench.protocols.mil:ABMIL_PAPER", "bags: the DinoBloom authors' multi-column attention MIL head"),
    ("abmil-gated", "bench.protocols.mil:ABMIL_GATED", "bags: gated-attention MIL (Ilse et al. 2018), same training"),
]:
    PROTOCOLS.add_lazy(_name, _target, summary=_summary)
