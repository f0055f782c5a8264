"""A task's preprocessing: an image -> image step before the extractor's own transform, with a spec.

The harness composes it with the extractor's transform (``ExtractorEntry.transform``) and puts its identity in the
features' fingerprint, so features made with another preprocessing are other features (another cache entry, another
result). A task names a built-in one (``Task.preprocessing``: :data:`PREPROCESSING`) or brings its own by
overriding ``Task.image_transform`` (a crop around a point, a stain normalisation): a subclass of
:class:`ImageTransform` defined outside hemabench is identified by its class and the sha256 of its source file as
well as its spec, so editing that file makes its features and results stale, as for a plugin extractor.

This module imports only PIL at call time; it is the tasks' layer, under the harness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class ImageTransform(ABC):
    """PIL image (RGB) -> PIL image, deterministic; ``spec()`` says everything its output depends on."""

    @abstractmethod
    def __call__(self, image):
        """The transformed image."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able settings (recorded with the features and results)."""

    def identity(self) -> dict[str, Any]:
        """What the features' fingerprint records: the spec of one of hemabench's own; for any other, its class,
        source file and the file's sha256 beside its spec."""
        if type(self).__module__.split(".")[0] == "tasks":
            return self.spec()
        from bench.core.files import class_source

        code_file, code_sha256 = class_source(type(self))
        return {"task_transform": {"class": f"{type(self).__module__}:{type(self).__qualname__}", "spec": self.spec(),
                                   "code_file": code_file, "code_sha256": code_sha256}}

    device_resize: int | None = None  # a plain bicubic resize to N x N, which GPU decoding can do on the device


@dataclass(frozen=True)
class PreResize(ImageTransform):
    """A resize to ``size`` x ``size`` with PIL's default filter (bicubic), as the DinoBloom authors'
    cross-validation code did (``Image.open(p).resize((224, 224))``)."""

    size: int = 224

    def __call__(self, image):
        from PIL import Image

        return image.resize((self.size, self.size), Image.Resampling.BICUBIC)

    def spec(self) -> dict[str, Any]:
        return {"pre_resize": [self.size, self.size, "bicubic"]}  # the key features were cached under before

    @property
    def device_resize(self) -> int:  # type: ignore[override]
        return self.size


# The built-in preprocessings a task names (``Task.preprocessing``; ``-t acevedo@preprocessing=direct``):
# "direct" is the extractor's transform on the original image, as the authors' fixed-split code did (BMC);
# "authors-cv" resizes to 224 x 224 first, as their cross-validation code did (Acevedo).
PREPROCESSING: dict[str, ImageTransform | None] = {"direct": None, "authors-cv": PreResize(224)}


# -- perturbations (robustness) ------------------------------------------------------------------------------------
# Perturbations that matter in hematology (``TASK@perturbation=NAME``; ``TASK@perturbation=all``:
# tasks.perturbations.PerturbationTask): seeded image -> image steps, the same pixels for every model, applied to
# each original image before the task's own preprocessing (a stain batch, focus, compression or scanner comes
# before anything the harness does).
#
# - ``stain``: HED jitter (Tellez et al., 2018): the image's optical density (natural log) deconvolved into
#   haematoxylin, eosin and DAB (Ruifrok & Johnston's matrix, as scikit-image's ``rgb2hed``), each stain's density
#   scaled by U(1 - s, 1 + s) and shifted by U(-s, s) optical-density units, s = 0.05, back to RGB. Blood smears are Romanowsky-stained, not H&E, but the same deconvolution
#   is the usual proxy for a stain batch's colour shift in cytology as in histology.
# - ``blur``: Gaussian blur, radius 1.5 px (PIL): a cell slightly out of focus.
# - ``jpeg``: JPEG re-encoding at quality 30 (PIL): a strongly compressed export.
# - ``rescale``: down to half size and back (bicubic, PIL): the detail of half the magnification, at the same size.
#
# The random parts (``stain``) draw from ``numpy.random.default_rng([seed, crc32 of the image's pixels])``: the
# draw depends on the image only, so every extractor and every run sees the same perturbed images.

CLEAN = "none"

# Ruifrok & Johnston (2001): rows are the RGB optical densities of haematoxylin, eosin and DAB (scikit-image's
# ``rgb_from_hed``); written here because neither PIL nor torchvision has a stain deconvolution
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


def image_rng(image, seed: int):
    """A numpy generator seeded by ``seed`` and the image's pixels (the same image, the same draw, in any order)."""
    import zlib

    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(image.tobytes())])


@dataclass(frozen=True)
class HedJitter(ImageTransform):
    sigma: float = 0.05
    seed: int = 0

    def __call__(self, image):
        import numpy as np
        from PIL import Image

        rng = image_rng(image, self.seed)
        rgb_from_hed = np.array(RGB_FROM_HED)
        # optical density (natural log) -> stain densities; jittered; back (scikit-image's rgb2hed and hed2rgb up to
        # their scaling of the density by 1 / ln(1e6), under which a bias of 0.05 would tint the background purple)
        density = -np.log(np.maximum(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0, 1e-6))
        stains = density @ np.linalg.inv(rgb_from_hed)
        stains = stains * rng.uniform(1 - self.sigma, 1 + self.sigma, 3) + rng.uniform(-self.sigma, self.sigma, 3)
        out = np.exp(-(stains @ rgb_from_hed))
        return Image.fromarray(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))

    def spec(self) -> dict[str, Any]:
        return {"hed_jitter": {"sigma": self.sigma, "seed": self.seed, "units": "optical density (natural log)"}}


@dataclass(frozen=True)
class GaussianBlur(ImageTransform):
    radius: float = 1.5

    def __call__(self, image):
        from PIL import ImageFilter

        return image.filter(ImageFilter.GaussianBlur(self.radius))

    def spec(self) -> dict[str, Any]:
        return {"gaussian_blur": {"radius": self.radius}}


@dataclass(frozen=True)
class JpegQuality(ImageTransform):
    quality: int = 30

    def __call__(self, image):
        import io

        from PIL import Image

        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")

    def spec(self) -> dict[str, Any]:
        return {"jpeg": {"quality": self.quality}}


@dataclass(frozen=True)
class Rescale(ImageTransform):
    factor: float = 0.5

    def __call__(self, image):
        from PIL import Image

        small = (max(1, round(image.width * self.factor)), max(1, round(image.height * self.factor)))
        return image.resize(small, Image.Resampling.BICUBIC).resize(image.size, Image.Resampling.BICUBIC)

    def spec(self) -> dict[str, Any]:
        return {"rescale": {"factor": self.factor, "back_to_original_size": True, "filter": "bicubic"}}


PERTURBATIONS: dict[str, ImageTransform] = {"stain": HedJitter(), "blur": GaussianBlur(), "jpeg": JpegQuality(),
                                            "rescale": Rescale()}
ALL = "all"
CHOICES = (CLEAN, *PERTURBATIONS, ALL)


@dataclass(frozen=True)
class Perturbed(ImageTransform):
    """A perturbation, then the task's own preprocessing (None: none)."""

    perturbation: str
    then: Any = None

    def __call__(self, image):
        image = PERTURBATIONS[self.perturbation](image)
        return image if self.then is None else self.then(image)

    def spec(self) -> dict[str, Any]:
        return {"perturbation": {self.perturbation: PERTURBATIONS[self.perturbation].spec()},
                **({} if self.then is None else self.then.spec())}

    def identity(self) -> dict[str, Any]:
        """The perturbation's spec beside the preprocessing's own identity (a plugin's keeps its source hash)."""
        return {"perturbation": {self.perturbation: PERTURBATIONS[self.perturbation].spec()},
                **({} if self.then is None else self.then.identity())}


def perturbed(perturbation: str, then) -> ImageTransform | None:
    """The task's transform with ``perturbation`` first (``none``: the transform as it is)."""
    if perturbation == CLEAN:
        return then
    if perturbation not in PERTURBATIONS:
        from bench.core.errors import UsageError

        raise UsageError(f"@perturbation= must be one of {', '.join(CHOICES)}, got {perturbation!r}")
    return Perturbed(perturbation, then)
