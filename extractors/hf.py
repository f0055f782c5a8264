"""The ``hf:<repo id or local folder>`` scheme: a transformers vision encoder as an extractor.

``entry_for(spec)`` reads the model's config (``AutoConfig``) to know the feature size before any model exists;
``build`` runs ``AutoModel.from_pretrained(spec, trust_remote_code=False)`` (never remote code) and casts it
to fp32. A local folder (``save_pretrained`` output: ``config.json`` + weights) works offline; a repo id is
read through the Hugging Face cache and honours ``HF_HUB_OFFLINE``. The weights are the model's own, loaded
by transformers at build time, so no ``--weights`` file is needed (one given is loaded strictly over them,
with the installed transformers' key names).

Feature: the CLS token (first token) of ``last_hidden_state``; ``pooling="mean"`` averages the patch tokens
(after the CLS and any register tokens) and ``"cls+mean"`` concatenates both (2 x hidden_size). Models whose
output has no token sequence ``last_hidden_state`` are refused with an error.

Preprocessing: mean/std/size/resampling from the folder's image processor (``AutoImageProcessor``) when it
has one, else ImageNet mean/std, ``config.image_size`` (or 224) and bilinear. The harness resizes to
input_size x input_size without a crop, whatever the processor would do. The fingerprint hashes the built
model's state; ``architecture`` records the spec (``hf:<spec>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core.errors import ExtractorError, MissingWeightsError, UsageError
from extractors.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ExtractorEntry,
    FeatureModel,
    WeightSource,
    pool_tokens,
)

TOKEN_POOLINGS = ("cls", "mean", "cls+mean")
# PIL resampling codes (what transformers' processors store) -> the harness's interpolation names
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}


@dataclass(frozen=True)
class PretrainedEntry(ExtractorEntry):
    """An entry whose ``build_fn`` loads the model's own weights (a model folder, the Hugging Face cache or
    open_clip's pretrained tags): it needs no weight file, and its fingerprint names where the weights came
    from (``state_sha256`` hashes their values). A file passed to ``build`` is still loaded strictly over them."""

    @property
    def needs_weights(self) -> bool:
        return False

    def fingerprint(self, model: nn.Module, weights=None) -> dict[str, Any]:
        record = super().fingerprint(model, weights)
        if weights is None:
            record["weights"] = {
                "kind": "builtin",
                "sources": [
                    {"kind": s.kind, "location": s.location, "revision": s.revision, "sha256": s.sha256}
                    for s in self.weights
                ],
            }
        return record


def _interpolation(resample: Any) -> str:
    """A processor's ``resample`` (PIL code/enum, torchvision InterpolationMode or name) -> harness name."""
    if resample is None:
        return "bilinear"
    value = getattr(resample, "value", resample)  # enums
    if isinstance(value, int):
        return _PIL_RESAMPLE.get(value, "bilinear")
    name = str(value).lower().rsplit(".", 1)[-1]
    return name if name in ("nearest", "lanczos", "bilinear", "bicubic") else "bilinear"


def _square_side(value: Any, what: str) -> int | None:
    """An image side from a processor/config size (int, (h, w), {"height", "width"} or {"shortest_edge"})."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)):
        height, width = value[-2], value[-1]
    else:
        def get(key):
            found = getattr(value, key, None)
            if found is None and hasattr(value, "get"):
                found = value.get(key)
            return found

        height, width = get("height"), get("width")
        if not (height and width):
            edge = get("shortest_edge")
            return int(edge) if edge else None
    if height != width:
        raise UsageError(f"{what} is {height}x{width}; the harness resizes to a square input")
    return int(height)


def _is_local(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1 or spec.endswith("/"):
        raise UsageError(f"hf:{spec}: no such folder {path} (a local model folder, or a hub repo id such as owkin/phikon)")
    return None


def _read_config(spec: str, folder: Path | None):
    from transformers import AutoConfig

    if folder is not None:
        if not folder.is_dir():
            raise UsageError(f"hf:{spec}: {folder} is a file; give the model folder (config.json + weights)")
        if not (folder / "config.json").is_file():
            raise UsageError(
                f"hf:{spec}: {folder} has no config.json, so it is not a transformers model folder "
                "(write one with model.save_pretrained(folder))"
            )
    try:
        return AutoConfig.from_pretrained(str(folder) if folder is not None else spec, trust_remote_code=False)
    except OSError as exc:  # not in the cache while offline, no such repo, no network
        raise MissingWeightsError(
            f"hf:{spec}: cannot read the model config ({exc}). A repo id is read from the Hugging Face cache "
            "($HF_HOME) when HF_HUB_OFFLINE is set or there is no network; download it there first, or pass a "
            "local folder (hf:/path/to/folder)"
        ) from exc


def _processor_values(spec: str, folder: Path | None) -> dict[str, Any]:
    """mean/std/input_size/interpolation from the model's image processor; {} when it has none."""
    from transformers import AutoImageProcessor

    source = str(folder) if folder is not None else spec
    if folder is not None and not (folder / "preprocessor_config.json").is_file():
        return {}
    try:
        processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False)
    except OSError:
        if folder is not None:
            raise
        return {}  # a repo without preprocessor_config.json
    values: dict[str, Any] = {}
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is not None and std is not None:
        if not getattr(processor, "do_normalize", True):
            raise UsageError(f"hf:{spec}: its image processor does not normalise; the harness always does")
        values["mean"] = tuple(float(v) for v in mean)
        values["std"] = tuple(float(v) for v in std)
    side = None
    if getattr(processor, "do_center_crop", False):
        side = _square_side(getattr(processor, "crop_size", None), f"hf:{spec} crop size")
    if side is None:
        side = _square_side(getattr(processor, "size", None), f"hf:{spec} processor size")
    if side is not None:
        values["input_size"] = side
    values["interpolation"] = _interpolation(getattr(processor, "resample", None))
    return values


def hf_token_features(backbone: nn.Module, images: torch.Tensor, *, pooling: str, num_prefix_tokens: int) -> torch.Tensor:
    """(N, 3, H, W) -> the pooled ``last_hidden_state`` tokens; a clear error for models without them."""
    output = backbone(pixel_values=images)
    tokens = getattr(output, "last_hidden_state", None)
    if not isinstance(tokens, torch.Tensor):
        raise ExtractorError(
            f"{type(backbone).__name__} returns no last_hidden_state; the hf: scheme takes vision encoders whose "
            "output is a token sequence (ViT, DINOv2, BEiT, ...)"
        )
    if tokens.dim() != 3:
        raise ExtractorError(
            f"{type(backbone).__name__}.last_hidden_state has shape {tuple(tokens.shape)}, not (N, tokens, dim): "
            "a convolutional feature map; the hf: scheme takes token models"
        )
    return pool_tokens(tokens, pooling, num_prefix_tokens)


def hf_patch_tokens(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The final normed patch tokens of a transformers ViT: ``last_hidden_state`` without its CLS token."""
    return backbone(pixel_values=images).last_hidden_state[:, 1:]


def sdpa_config(config_class, values: dict[str, Any]):
    """``config_class(**values)`` with PyTorch SDPA attention where the installed transformers can select it."""
    try:
        return config_class(**values, attn_implementation="sdpa")
    except (TypeError, ValueError):  # a transformers without selectable attention implementations
        return config_class(**values)


def _build(entry: ExtractorEntry, source: str) -> FeatureModel:
    from transformers import AutoModel

    from extractors.weights import refused_pickle, unpickling_error

    try:
        model = AutoModel.from_pretrained(source, trust_remote_code=False).float()
    except Exception as exc:  # transformers reads a pickled pytorch_model.bin with weights_only=True: one line
        refused = unpickling_error(exc)
        if refused is None:
            raise
        pickled = sorted(Path(source).glob("*.bin")) if Path(source).is_dir() else []
        raise refused_pickle(pickled[0] if len(pickled) == 1 else f"the weights of hf:{source}", refused) from exc
    hidden = int(model.config.hidden_size)
    expected = hidden * (2 if entry.pooling == "cls+mean" else 1)
    if entry.pooling not in TOKEN_POOLINGS or entry.dim != expected:
        raise ExtractorError(
            f"extractor {entry.name!r}: pooling {entry.pooling!r} with hidden size {hidden} gives {expected}-d "
            f"features, but the entry says {entry.dim}"
        )
    prefix = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
    return FeatureModel(model, partial(hf_token_features, pooling=entry.pooling, num_prefix_tokens=prefix))


def entry_for(spec: str, pooling: str = "cls") -> ExtractorEntry:
    """The entry for ``hf:<spec>``: a hub repo id (HF cache) or a local ``save_pretrained`` folder."""
    if pooling not in TOKEN_POOLINGS:
        raise UsageError(f"hf:{spec}: pooling {pooling!r} is not one of {TOKEN_POOLINGS}")
    folder = _is_local(spec)
    config = _read_config(spec, folder)
    hidden = getattr(config, "hidden_size", None)
    if not isinstance(hidden, int):
        raise UsageError(
            f"hf:{spec}: its config ({type(config).__name__}) has no hidden_size; the hf: scheme takes vision "
            "encoders with a token output (ViT, DINOv2, ...)"
        )
    values = {
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": _square_side(getattr(config, "image_size", None), f"hf:{spec} config image_size") or 224,
        "interpolation": "bilinear",
    }
    values.update(_processor_values(spec, folder))
    source = str(folder.resolve()) if folder is not None else spec
    return PretrainedEntry(
        name=f"hf:{spec}",
        family="hf",
        architecture=f"hf:{spec}",
        dim=hidden * (2 if pooling == "cls+mean" else 1),
        build_fn=partial(_build, source=source),
        pooling=pooling,
        weights=(WeightSource("file" if folder is not None else "hub", source),),
        summary=f"transformers {type(config).__name__} from {spec}, {pooling} of last_hidden_state",
        **values,
    )
