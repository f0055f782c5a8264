"""``trained:<export.pth>``: a checkpoint written by the DinoBloom trainer (``dinobloom_train``).

An export is a DinoBloom-format file (``{"teacher": {"backbone.*", "dino_head.*", "ibot_head.*"}}``) with a
sidecar ``<same name>.json`` naming the architecture (a timm ViT spec), the preset and the training iteration.
The feature is the teacher backbone's CLS token after the final norm, as for DinoBloom; the sidecar's training
information travels into every result (``extractor.metadata``), so the leaderboard can draw the downstream
curve over training. Exports of the ``s`` preset have DinoBloom-S's keys (the published format: the model
``dinobloom-s`` builds loads them), but ``--extractor dinobloom-s --weights <export>`` is refused, pointing at
``trained:<export>``: the results would be named as the published model's (:func:`refuse_as_weights`).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from bench.core.errors import NotFoundError, UsageError
from extractors.base import ExtractorEntry, WeightSource
from extractors.dinov2 import unwrap_dinov2
from extractors.vit import ViTSpec, build_vit_spec

SIDECAR_FORMAT = "hemabench-dinobloom-export/1"


def sidecar_path(export: Path) -> Path:
    return export.with_suffix(".json")


def export_info(export: Path) -> dict | None:
    """A `bench train` export's own metadata (its sidecar), or None for any other file."""
    try:
        info = json.loads(sidecar_path(Path(export)).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == SIDECAR_FORMAT else None


def refuse_as_weights(entry: ExtractorEntry, weights: Path) -> None:
    """Refuse a trainer export as ``--weights`` of another extractor (``-e dinobloom-s --weights <export>``): it
    runs as ``trained:<export>``, which builds its architecture from the sidecar and names the results by run and
    iteration, with the training information, never as the published model's."""
    info = None if entry.family == "trained" else export_info(weights)
    if info is None:
        return
    raise UsageError(
        f"--weights {weights} is a `bench train` export (preset {info.get('preset')}, iteration "
        f"{info.get('iteration')}; sidecar {sidecar_path(Path(weights))}): evaluate it with -e trained:{weights} "
        f"instead of -e {entry.name} --weights, so that its results carry its own name and training information"
    )


def entry_for(spec: str) -> ExtractorEntry:
    export = Path(spec).expanduser().resolve()
    if not export.is_file():
        raise NotFoundError(f"trained:{spec}: no such file {export}")
    side = sidecar_path(export)
    if not side.is_file():
        raise UsageError(
            f"trained:{spec}: the sidecar {side} that names the architecture is missing; exports written by "
            "`bench train` have one. For a DinoBloom-S/B/L/G-architecture file use --extractor dinobloom-s "
            "--weights FILE (or -b/-l/-g)"
        )
    info = json.loads(side.read_text())
    if info.get("format") != SIDECAR_FORMAT:
        raise UsageError(f"{side}: not a hemabench trainer sidecar (format {info.get('format')!r})")
    vit = ViTSpec.from_dict(info["architecture"])
    return ExtractorEntry(
        name=f"{Path(str(info.get('run') or export.parent)).name}@{info.get('iteration')}",  # e.g. tiny@30
        family="trained",
        architecture=f"timm:{vit.timm_name}@{vit.img_size}{''.join(f'+{k}={v}' for k, v in vit.overrides)}",
        dim=vit.embed_dim,
        build_fn=partial(build_vit_spec, spec=vit),
        input_size=vit.img_size,
        weights=(WeightSource("file", str(export)),),
        summary=f"DinoBloom trainer export, preset {info.get('preset')}, iteration {info.get('iteration')}",
        unwrap_fn=unwrap_dinov2,
        meta_init=True,
        metadata={"training": {k: info.get(k) for k in ("preset", "iteration", "run", "created", "warnings")}},
    )
