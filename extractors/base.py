"""The extractor contract: an entry holds everything that changes the features, and builds the model.

An ``ExtractorEntry`` is metadata (name, dim, preprocessing, pooling, precision, weight sources) plus a
``build_fn`` that returns the bare architecture. ``entry.build()`` seeds the initialisation, loads weights
strictly when given, and wraps the architecture so that it maps a normalised image batch (N, 3, H, W) to
features (N, dim). The cache key of the harness is derived from ``entry.fingerprint(model)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.core.errors import ExtractorError, MissingWeightsError, UsageError, WeightsError
from bench.core.files import class_source, sha256_file_remembered
from extractors.weights import load_strict, read_state_dict, state_dict_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = ("cls", "mean", "cls+mean", "model")
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")  # bench.precision: what each means
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


@dataclass(frozen=True)
class WeightSource:
    """Where an entry's weights come from. ``kind``: random | file | url | hub."""

    kind: str
    location: str = ""
    sha256: str | None = None
    revision: str | None = None  # hub sources: a commit hash; only pinned hub sources are ever downloaded
    filename: str | None = None  # hub sources: the file in the repository (default model.safetensors)

    def describe(self) -> str:
        if self.kind == "random":
            return "random initialisation (seeded)"
        rev = f"@{self.revision}" if self.revision else ""
        file = f" {self.filename}" if self.filename else ""
        sha = f" (sha256 {self.sha256})" if self.sha256 else ""
        return f"{self.kind}: {self.location}{rev}{file}{sha}"


RANDOM_INIT = (WeightSource("random"),)


class FeatureModel(nn.Module):
    """Architecture + pooling: normalised images (N, 3, H, W) -> features (N, dim).

    ``backbone`` is the module weights are loaded into; ``features`` turns (backbone, images) into (N, dim);
    ``tokens`` (token models only) turns them into the final normed patch tokens (N, H*W, D), e.g. for a PCA
    of patch features.
    """

    def __init__(
        self,
        backbone: nn.Module,
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        tokens: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self._features = features
        self._tokens = tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._features(self.backbone, images)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        if self._tokens is None:
            raise UsageError(f"{type(self.backbone).__name__} gives no patch tokens (not a token model)")
        return self._tokens(self.backbone, images)


def call_backbone(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooling "model": the backbone's own forward output, flattened to (N, dim)."""
    return backbone(images).flatten(1)


def pool_tokens(tokens: torch.Tensor, pooling: str, num_prefix_tokens: int = 1) -> torch.Tensor:
    """(N, T, D) normed tokens -> (N, D) or (N, 2D): CLS token, mean of patch tokens, or both concatenated."""
    if pooling == "cls":
        return tokens[:, 0]
    patch_mean = tokens[:, num_prefix_tokens:].mean(dim=1)
    if pooling == "mean":
        return patch_mean
    if pooling == "cls+mean":
        return torch.cat([tokens[:, 0], patch_mean], dim=1)
    raise UsageError(f"pooling {pooling!r} does not apply to token outputs; use one of cls, mean, cls+mean")


@dataclass(frozen=True)
class ExtractorEntry:
    """One extractor: everything that changes its features, and how to build it.

    ``build_fn(entry)`` returns a ``FeatureModel`` with random (or built-in) initialisation; the seed is set
    by ``build``. ``weights``: the sources in order of preference; an entry whose only source is ``random``
    needs no file. ``architecture`` is a human/machine-readable id (e.g. ``timm:vit_small_patch14_dinov2``).
    """

    # Empty in a built-in's module: the registry names it by the name it is registered under (extractors/__init__.py),
    # the one place a built-in's name is written. Keyword-only, so that it can default while the fields below
    # cannot. Plugin files, schemes and trainer exports name their entries themselves.
    name: str = field(default="", kw_only=True)
    family: str
    architecture: str
    dim: int
    build_fn: Callable[["ExtractorEntry"], FeatureModel] = field(repr=False, compare=False)
    input_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = "cls"
    precision: str = "auto"  # a preference; the run resolves it (bench.precision) and fingerprints the result
    weights: tuple[WeightSource, ...] = RANDOM_INIT
    seed: int = 0
    summary: str = ""
    code_sha256: str | None = None  # for plugin files: the source the features depend on
    supports_cls: bool = True  # False for token models without a CLS token (Swin)
    metadata: dict = field(default_factory=dict, compare=False)  # recorded with results (e.g. training iteration)
    # (stored container, source path, backbone) -> the backbone's state dict; None: plain / {"state_dict"} / {"model"}
    unwrap_fn: Callable[[Any, str, nn.Module], dict[str, torch.Tensor]] | None = field(
        default=None, repr=False, compare=False
    )
    # build_fn makes every tensor of the model a parameter or persistent buffer, so a model built on the meta
    # device (no random initialisation: ViT-g's takes ~30 s) is complete once a weight file is assigned to it
    meta_init: bool = False
    # Set by the harness, never by an entry: the task's preprocessing (``Task.image_transform``, tasks.transforms), an
    # image -> image step before the transform below, its identity part of the transform's spec; None: none.
    task_transform: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.dim <= 0:
            problems.append(f"dim must be positive, got {self.dim}")
        if self.input_size <= 0:
            problems.append(f"input_size must be positive, got {self.input_size}")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean/std must be 3 values with std > 0, got {self.mean}/{self.std}")
        if problems:
            raise UsageError(f"extractor entry {self.name or self.architecture!r}: " + "; ".join(problems))

    @property
    def needs_weights(self) -> bool:
        return not any(source.kind == "random" for source in self.weights)

    def replace(self, **changes: Any) -> "ExtractorEntry":
        return dataclasses.replace(self, **changes)

    def with_pooling(self, pooling: str) -> "ExtractorEntry":
        """The same extractor with another token pooling, named ``<name>+<pooling>`` (its own results/cache)."""
        if pooling == self.pooling:
            return self
        if self.pooling not in ("cls", "mean", "cls+mean") or pooling not in ("cls", "mean", "cls+mean"):
            raise UsageError(
                f"extractor {self.name!r} has a fixed output ({self.pooling}); another pooling (NAME+cls, NAME+mean, "
                "NAME+cls+mean) applies to token models"
            )
        if not self.supports_cls and "cls" in pooling:
            raise UsageError(f"extractor {self.name!r} has no CLS token; name {self.name}+mean")
        token_dim = self.dim // 2 if self.pooling == "cls+mean" else self.dim
        return self.replace(
            name=f"{self.name}+{pooling}", pooling=pooling, dim=token_dim * (2 if pooling == "cls+mean" else 1)
        )

    # -- model --------------------------------------------------------------------------------------------
    def build(self, weights: str | Path | None = None) -> FeatureModel:
        """The model in eval mode on CPU: seeded init, then the weights in ``weights`` loaded strictly."""
        if weights is None and self.needs_weights:
            sources = "; ".join(source.describe() for source in self.weights) or "none listed"
            raise MissingWeightsError(
                f"extractor {self.name!r} needs weights and none were given. Sources: {sources}. "
                "Pass the file with --weights PATH."
            )
        if weights is not None and self.meta_init:
            model = self._build_from_file(weights)
            if model is not None:
                return model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self.build_fn(self)
        if weights is not None:
            state = self.unwrap_state_dict(read_state_dict(weights), weights, model.backbone)
            load_strict(model.backbone, state, weights)
        return model.eval()

    def _build_from_file(self, weights: str | Path) -> FeatureModel | None:
        """The architecture on the meta device (no initialisation, no memory), then the file's tensors assigned
        to it: a 1.1 B-parameter ViT-g is ready in seconds. None when the architecture holds a tensor the file
        cannot provide (a non-persistent buffer): then it is built for real. The file is read, not memory-mapped:
        mapped parameters would change (or the process die of SIGBUS) when the file is rewritten during a run."""
        with torch.device("meta"):
            model = self.build_fn(self)
        own = model.backbone.state_dict()
        tensors: dict[str, torch.Tensor] = dict(model.named_parameters(prefix="", remove_duplicate=False))
        tensors.update(model.named_buffers(remove_duplicate=False))
        if any(not name.startswith("backbone.") or name[len("backbone."):] not in own for name in tensors):
            return None
        state = self.unwrap_state_dict(read_state_dict(weights), weights, model.backbone)
        load_strict(model.backbone, state, weights, assign=True)
        return model

    def unwrap_state_dict(self, container: Any, source: str | Path, backbone: nn.Module) -> dict[str, torch.Tensor]:
        """Turn a stored container into the backbone's state dict. Families with a published format set
        ``unwrap_fn``; the default accepts a plain state dict, ``{"state_dict": ...}`` or ``{"model": ...}``."""
        if self.unwrap_fn is not None:
            return self.unwrap_fn(container, str(source), backbone)
        if isinstance(container, dict):
            for key in ("state_dict", "model"):
                if key in container and isinstance(container[key], dict):
                    return container[key]
            if all(isinstance(v, torch.Tensor) for v in container.values()):
                return container
        raise WeightsError(f"{source} does not hold a state dict (top-level keys: {list(container)[:10]})")

    # -- preprocessing ------------------------------------------------------------------------------------
    def transform(self):
        """PIL image -> normalised tensor: resize to input_size x input_size (aspect not kept, no crop); the task's
        preprocessing first, where the harness set one (a 224-px pre-resize: PIL then skips the second resize of a
        224-px model)."""
        from torchvision import transforms

        mode = getattr(transforms.InterpolationMode, self.interpolation.upper())
        first = [] if self.task_transform is None else [self.task_transform]
        return transforms.Compose(
            [
                *first,
                transforms.Resize((self.input_size, self.input_size), interpolation=mode),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )

    def transform_spec(self) -> dict[str, Any]:
        return {
            "resize": [self.input_size, self.input_size],
            "interpolation": self.interpolation,
            "crop": None,
            "mean": list(self.mean),
            "std": list(self.std),
            "convert": "RGB",
            # only when set, so that the keys of features made without it stay what they were
            **({} if self.task_transform is None else self.task_transform.identity()),
        }

    # -- identity -----------------------------------------------------------------------------------------
    def fingerprint(self, model: nn.Module, weights: str | Path | None = None) -> dict[str, Any]:
        """Everything the features depend on; ``state_sha256`` hashes the built model's actual state."""
        import timm
        import torchvision

        return {
            "name": self.name,
            "family": self.family,
            "architecture": self.architecture,
            "dim": self.dim,
            "pooling": self.pooling,
            "precision": self.precision,
            "transform": self.transform_spec(),
            "weights": (
                {"kind": "file", "path": str(weights), "sha256": sha256_file_remembered(weights)}
                if weights is not None
                else {"kind": "random", "seed": self.seed}
            ),
            "state_sha256": state_dict_sha256(model),
            "code_sha256": self.code_sha256,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__},
        }


def entry_from_module_class(name: str, cls: type[nn.Module]) -> ExtractorEntry:
    """Adapt a plain ``nn.Module`` subclass (a plugin) into an entry.

    The class declares ``dim`` and may declare ``input_size``, ``mean``, ``std``, ``interpolation``,
    ``precision`` and ``seed`` as class attributes; it is built with no arguments and its ``forward`` maps a
    normalised batch to (N, dim).
    """
    if not hasattr(cls, "dim"):
        raise ExtractorError(f"extractor class {cls.__qualname__} ({name}) must declare a class attribute `dim`")
    where, code_sha = class_source(cls)
    kwargs = {
        attr: getattr(cls, attr)
        for attr in ("input_size", "interpolation", "mean", "std", "precision", "seed")
        if hasattr(cls, attr)
    }
    for attr in ("mean", "std"):
        if attr in kwargs:
            kwargs[attr] = tuple(float(v) for v in kwargs[attr])
    return ExtractorEntry(
        name=name,
        family="plugin",
        architecture=f"{where}:{cls.__qualname__}",
        dim=int(getattr(cls, "dim")),  # (checked above)
        build_fn=lambda entry: FeatureModel(cls(), call_backbone),
        pooling="model",
        summary=(cls.__doc__ or "").strip().splitlines()[0] if (cls.__doc__ or "").strip() else "",
        code_sha256=code_sha,
        **kwargs,
    )

