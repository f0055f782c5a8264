"""``bench list extractors --details``: every built-in entry with its family, dim, parameters, licence and
whether its weights are here. Imports every family's code and builds each architecture on the meta device
(no memory, no initialisation) to count its parameters, so it is slower than the plain listing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CatalogRow:
    name: str
    family: str
    dim: int
    parameters: int | None  # None: the architecture could not be built without its weights (e.g. hf: folders)
    licence: str
    weights: str  # not needed | present | missing | bad


def parameters(entry) -> int | None:
    import torch

    try:
        with torch.device("meta"):
            model = entry.build_fn(entry)
    except Exception:  # an architecture that needs its files to be built: its size is unknown here
        return None
    return sum(p.numel() for p in model.parameters())


def catalog(weights_home: Path) -> list[CatalogRow]:
    from extractors import EXTRACTORS, get_extractor
    from extractors.sources import status

    rows = []
    for name in EXTRACTORS.names():
        entry = get_extractor(name)
        state, _ = status(entry, weights_home)
        licence = entry.metadata.get("licence", "—")
        if entry.metadata.get("gated"):
            licence += " (gated)"
        rows.append(CatalogRow(name, entry.family, entry.dim, parameters(entry), licence, state))
    return sorted(rows, key=lambda r: (r.family, r.name))
