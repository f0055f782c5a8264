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
    ("batch-effect", "protocols.batch_effect:BATCH_EFFECT",
     "data sets side by side (A+B): scIB's domain and class silhouettes and a kNN mixing score, domains balanced "
     "per class"),
]:
    PROTOCOLS.add_lazy(_name, _target, summary=_summary)


def get_protocol(name: str):
    """The protocol for a registered name, an entry point or ``path/to/file.py:NAME``."""
    return PROTOCOLS.get(name)
