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
