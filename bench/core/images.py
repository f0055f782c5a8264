"""Image files: which files are images (:func:`image_extensions`, :func:`sniff_format`, :func:`identify`) and the
one way every part of the project decodes one (:func:`decode_rgb`, an 8-bit RGB PIL image).

The decoding rule (docs/tasks.md, "Image files"):

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, and with alpha ``LA``, ``PA``,
  ``RGBA``, ``RGBa``, ``RGBX``) go through PIL's ``convert("RGB")``, exactly as before (so the features of 8-bit
  data sets do not change). **Alpha is dropped**: every pixel keeps its stored colour, transparent or not (what
  torchvision's loader does; a mask kept in the alpha channel is not applied). A palette's transparency is
  dropped the same way. ICC profiles are not applied, and neither is the EXIF orientation.
* 16-bit grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``: 16-bit PNG and TIFF) is **scaled by the type's
  full range**: ``round(v / 257)``, so 0 -> 0 and 65535 -> 255 in every image, whatever its own minimum and
  maximum (the recorded intensities stay comparable across images; no per-image stretching).
* ``I`` (32-bit integers; PIL's mode for 16-bit PGM and for 32-bit integer TIFFs) is read as 16-bit data, the
  same ``round(v / 257)``, when every value lies in 0..65535; an image with a value outside that range is
  refused by name (its range is not known, so no scale is faithful). Note that 8-bit values stored in a
  32-bit file come out dark (0..1): convert such files to 8 bits.
* ``F`` (32-bit float) is scaled as ``round(v * 255)`` when every value is finite and in [0, 1]; any other
  float image is refused by name (its scale is unknown).
* 16-bit-per-channel RGB(A) and 16-bit gray + alpha (PNG, TIFF): PIL itself reduces each channel to 8 bits
  while reading (its high byte, ``v >> 8``, which differs from ``round(v / 257)`` by at most 1); alpha is then
  dropped as above.
* Multi-frame files (GIF, multi-page TIFF): the first frame.

Everything that fails (not an image, truncated, a refused mode or range) raises
:class:`~bench.core.errors.BadImageError` naming the file and the fix. The whole image is decoded, so a
truncated file fails here and not later.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from bench.core.errors import BadImageError, HemabenchError

# Modes PIL's convert("RGB") maps faithfully (8 bits per channel; alpha dropped).
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Formats PIL registers but cannot decode to pixels here: stubs need a handler, MPEG is read for its size only,
# EPS needs Ghostscript. Files of these types are not images for the benchmark.
NOT_DECODED = frozenset({"MPEG", "EPS"})
_FIX = "re-export it as 8-bit (or 16-bit integer) PNG, TIFF or JPEG, or remove it from the data set"

# First bytes of the common formats: a fast answer without opening the file with PIL.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xffO\xffQ", "jpeg2000"),  # raw codestream
)


@functools.cache
def decodable_formats() -> frozenset[str]:
    """Names of the formats the installed PIL opens and decodes (``JPEG``, ``PNG``, ``GIF``, ``WEBP``, ...)."""
    Image.init()
    return frozenset(
        name for name, (factory, _) in Image.OPEN.items()
        if name not in NOT_DECODED and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))
    )


@functools.cache
def image_extensions() -> frozenset[str]:
    """File-name extensions (lower case, with the dot) of every format in :func:`decodable_formats`."""
    formats = decodable_formats()
    return frozenset(ext.lower() for ext, name in Image.registered_extensions().items() if name in formats)


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes announce (for the common formats: jpeg, png, tiff, bmp, gif, webp, jpeg2000),
    or None: either not an image (an HTML error page, text, an empty file) or a rarer format (:func:`identify`)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def identify(path: str | os.PathLike) -> str | None:
    """The format PIL recognises in the file (lower case, e.g. ``"tga"``), reading its header only; None when
    PIL does not recognise it as a format it can decode (or the file cannot be opened)."""
    try:
        with Image.open(path) as image:
            name = image.format
    except Exception:  # PIL raises UnidentifiedImageError, and plugins raise many types on foreign files
        return None
    return name.lower() if name in decodable_formats() else None


def decode_rgb(path: str | os.PathLike) -> Image.Image:
    """Open and decode the whole file into an 8-bit RGB image, by the rule in this module's docstring.

    Raises :class:`~bench.core.errors.BadImageError` (naming the file and the fix) for a file PIL cannot
    decode (not an image, truncated, corrupt) and for an image this rule refuses.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # the whole file: truncated data fails here
            return to_rgb(image, path)
    except HemabenchError:
        raise
    except Exception as exc:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ValueError, struct.error ...
        raise BadImageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}; {_FIX}") from None


def to_rgb(image: Image.Image, path: str | os.PathLike = "<image>") -> Image.Image:
    """An opened PIL image as 8-bit RGB (the rule in this module's docstring); ``path`` names it in errors."""
    mode = image.mode
    if mode in EIGHT_BIT_MODES:
        return image.convert("RGB")
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise BadImageError(
                f"image {path} holds 32-bit integers outside 0..65535 (min {values.min()}, max {values.max()}): "
                f"their range is unknown, so they cannot be scaled to 8 bits faithfully; {_FIX}"
            )
        return _gray(np.rint(values.astype(np.float64) / 257.0))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            finite = values[np.isfinite(values)]
            where = f"min {finite.min():g}, max {finite.max():g}" if finite.size else "no finite value"
            nonfinite = "" if finite.size == values.size else f", {values.size - finite.size} NaN/inf"
            raise BadImageError(
                f"image {path} is a float image with values outside [0, 1] ({where}{nonfinite}): its intensity "
                f"scale is unknown, so it cannot be converted to 8 bits faithfully; {_FIX}"
            )
        return _gray(np.rint(values * 255.0))
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise BadImageError(f"image {path} has PIL mode {mode!r}, which cannot be converted to RGB ({exc}); {_FIX}") from None


def _gray(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")  # 2-D uint8 -> mode L
