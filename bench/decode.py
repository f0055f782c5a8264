"""Decoding on the device (``--decode gpu``): DataLoader workers only read file bytes, the main process decodes a
whole batch of JPEGs in one nvJPEG call and resizes and normalises on the GPU.

Why: the PIL path (:class:`bench.extract.ImageFiles`: ``decode_rgb`` + the entry's ``Resize``/``ToTensor``/
``Normalize`` in workers) tops out near 700 img/s on 16 cores for the PBC JPEGs, twenty times below a ViT-S
forward on an H200.

Same features, by construction:

* **Which files go to the device decoder.** Only files that are plainly JPEG (magic bytes, an end-of-image
  marker, and PIL reading the header as ``RGB`` or ``L``). Everything else (PNG, TIFF, 16-bit, CMYK JPEG,
  truncated or corrupt files) is decoded in the worker by the one rule, :func:`bench.core.images.decode_rgb`,
  which also raises the usual :class:`~bench.core.errors.BadImageError`. A JPEG that the batched decoder still
  refuses is decoded by ``decode_rgb`` in the main process. libjpeg-turbo (torchvision, CPU) gives the same
  pixels as PIL (both use libjpeg-turbo; measured identical on 400 PBC images); nvJPEG may differ by a level or
  two here and there (torchvision's own test allows a mean of < 2 levels).
* **Resize.** PIL resizes an 8-bit image in two passes, one per axis, and stores the intermediate image as 8
  bits. :func:`resize_levels` does the same in float32 (the only dtype CUDA's antialiased kernels take): two
  ``torchvision.transforms.v2.functional.resize`` passes with ``antialias=True``, in PIL's order
  (:func:`pil_pass_order`: Pillow 13 shrinks the height first when that saves work), each rounded half up and
  clamped to 0..255. Against PIL on 400 PBC images (mostly 360x363 -> 224) this is within one level everywhere
  and off by one level in under 0.1 % of the values (``benchmarks/bench_decode.py`` has the table, also for the
  variants it beats: one float pass rounded at the end is off by one in 12 % of the values, and by up to 3
  levels for bicubic, whose overshoot PIL clamps between the passes). ``nearest`` takes PIL's own source
  indices (:func:`pil_nearest_index`): exact. ``lanczos`` has no torch kernel and is refused
  (:func:`check_interpolation`).
* **Normalise.** ``/255``, ``-mean``, ``/std`` in float32: the operations of ``ToTensor`` + ``Normalize``. One
  level is ``1 / (255 * std)`` after normalisation, 0.0175 for ImageNet's std.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.core.errors import BadImageError, UsageError
from bench.core.images import decode_rgb

DECODE_CHOICES = ("cpu", "gpu", "auto")
GPU_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # lanczos has no torch kernel
# torch's counterpart of PIL's convolution filters (both have PIL's support and a=-0.5 when antialiased)
_FILTERS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
_JPEG_MAGIC, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_JPEG_MODES = ("RGB", "L")  # what nvJPEG and PIL turn into the same RGB; CMYK goes to PIL
_SKIP_HINT = "or pass --skip-bad-images to leave it out (it is then listed in the result)"


def check_interpolation(interpolation: str) -> None:
    """Refuse an interpolation the device path cannot reproduce (raises :class:`UsageError`)."""
    if interpolation not in GPU_INTERPOLATIONS:
        raise UsageError(
            f"interpolation {interpolation!r} cannot run with --decode gpu: torch has no {interpolation} resize "
            f"that matches PIL's (GPU decoding supports {', '.join(GPU_INTERPOLATIONS)}); use --decode cpu for this "
            "extractor"
        )


def resolve_decode(requested: str, device: torch.device, interpolation: str) -> str:
    """``cpu`` or ``gpu`` for ``--decode`` on ``device``: ``auto`` picks gpu on CUDA when the entry's
    interpolation is supported; an explicit ``gpu`` that cannot work is refused rather than silently ignored."""
    if requested not in DECODE_CHOICES:
        raise UsageError(f"--decode {requested!r} is not one of {', '.join(DECODE_CHOICES)}")
    if requested == "auto":
        return "gpu" if device.type == "cuda" and interpolation in GPU_INTERPOLATIONS else "cpu"
    if requested == "gpu":
        if device.type != "cuda":
            raise UsageError(f"--decode gpu needs a CUDA device (extracting on {device.type}); use --decode cpu")
        check_interpolation(interpolation)
    return requested


# -- workers: bytes, or pixels for what the device decoder must not see ---------------------------------------


def batch_decodable(raw: bytes) -> bool:
    """Whether nvJPEG may decode these bytes: a complete JPEG (no truncated tail, which PIL refuses but a JPEG
    decoder may fill in) whose colours PIL converts the same way (RGB or gray, not CMYK)."""
    if not (raw.startswith(_JPEG_MAGIC) and raw.endswith(_JPEG_END)):
        return False
    try:
        with Image.open(io.BytesIO(raw)) as image:  # the header only
            return image.format == "JPEG" and image.mode in _JPEG_MODES
    except Exception:  # noqa: BLE001 -- PIL raises many types on broken headers; decode_rgb names the problem
        return False


def pil_pixels(path: str | Path) -> torch.Tensor:
    """The file by the one decoding rule, as a (3, H, W) uint8 tensor (raises :class:`BadImageError`)."""
    return torch.from_numpy(np.array(decode_rgb(path), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def encode_file(path: str | Path) -> torch.Tensor:
    """What a worker hands on: the file's bytes (1-D uint8) when :func:`batch_decodable`, else the pixels
    decoded by :func:`pil_pixels` (3-D uint8), so that the main process never runs PIL on a common file."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        raw = b""  # decode_rgb reports the missing or unreadable file in the usual words
    if batch_decodable(raw):
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return pil_pixels(path)


def with_skip_hint(exc: BadImageError) -> BadImageError:
    """The error :class:`bench.extract.ImageFiles` raises for the same file: the decoder's message (it names
    the file and the fix) plus the ``--skip-bad-images`` alternative."""
    return BadImageError(f"{exc}; {_SKIP_HINT}")


class EncodedFiles(torch.utils.data.Dataset):
    """Image files for :func:`decode_batch`: item = (tensor, index, ok).

    The tensor is the file's bytes (1-D uint8) for a JPEG the device decodes, or its pixels (3-D uint8, decoded
    here by ``decode_rgb``) for any other file. A bad file raises :class:`BadImageError` naming it (as
    ``ImageFiles`` does), or with ``skip_bad`` gives an empty tensor and ``ok=False``.
    """

    def __init__(self, paths: Sequence[Path], skip_bad: bool):
        self.paths = list(paths)
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        try:
            return encode_file(self.paths[index]), index, True
        except BadImageError as exc:
            if not self.skip_bad:
                raise with_skip_hint(exc) from None
            return torch.empty(0, dtype=torch.uint8), index, False


def collate_encoded(
    batch: list[tuple[torch.Tensor, int, bool]],
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """DataLoader ``collate_fn`` for :class:`EncodedFiles`: the tensors stay a list (their lengths and shapes
    differ); indices and ok flags become tensors as with the default collate."""
    tensors, indices, ok = zip(*batch)
    return list(tensors), torch.tensor(indices, dtype=torch.long), torch.tensor(ok, dtype=torch.bool)


# -- main process: decode, resize, normalise on the device ----------------------------------------------------


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 images on ``device`` from JPEG bytes, in one batched call (nvJPEG on CUDA, libjpeg-turbo
    on CPU); when the batch call fails (one bad file fails it all), each file alone, None for those refused."""
    if not data:
        return []
    if device.type == "cuda":
        # torchvision's nvJPEG decoder allocates its outputs on our stream but writes them from its own stream
        # without waiting for ours, so it may overwrite freed memory that queued kernels still read
        # (pytorch/vision#9606, not fixed in torchvision). The cost: this batch's decode waits for the device.
        torch.cuda.current_stream(device).synchronize()
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        return [_decode_one(item, device) for item in data]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)  # pyright: ignore[reportReturnType]  # one tensor in, one out
    except RuntimeError:
        return None


def decode_pixels(encoded: list[torch.Tensor], paths: Sequence[str | Path], device: torch.device,
                  skip_bad: bool) -> list[torch.Tensor | None]:
    """Every item as (3, H, W) uint8 on ``device`` (None: a bad file, with ``skip_bad``). JPEG bytes go to
    :func:`decode_jpegs`; what it refuses, and an empty item, is decoded by ``decode_rgb`` from the file, which
    gives PIL's pixels or raises :class:`BadImageError` as the CPU path would."""
    pixels: list[torch.Tensor | None] = [t.to(device, non_blocking=True) if t.ndim == 3 else None for t in encoded]
    jpeg_rows = [i for i, t in enumerate(encoded) if t.ndim == 1 and t.numel() > 0]
    for row, image in zip(jpeg_rows, decode_jpegs([encoded[i] for i in jpeg_rows], device)):
        pixels[row] = image
    for row, image in enumerate(pixels):
        if image is None and (encoded[row].numel() > 0 or not skip_bad):
            pixels[row] = _pil_fallback(paths[row], device, skip_bad)
    return pixels


def _pil_fallback(path: str | Path, device: torch.device, skip_bad: bool) -> torch.Tensor | None:
    try:
        return pil_pixels(path).to(device)
    except BadImageError as exc:
        if not skip_bad:
            raise with_skip_hint(exc) from None
        return None


def resize_levels(images: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """(N, 3, H, W) float32 levels 0..255 -> (N, 3, size, size) levels, the way PIL resizes an 8-bit image: one
    antialiased pass per axis, in PIL's order (:func:`pil_pass_order`), each rounded half up and clamped to
    0..255 as PIL stores its 8-bit intermediate and result. Nearest picks PIL's pixels (:func:`pil_nearest_index`).
    The module docstring says how close this comes to PIL and why one float pass is not enough."""
    check_interpolation(interpolation)
    height, width = images.shape[-2:]
    if interpolation == "nearest":
        rows, cols = pil_nearest_index(height, size), pil_nearest_index(width, size)
        return images.index_select(-2, rows.to(images.device)).index_select(-1, cols.to(images.device))
    if pil_pass_order(height, width, size) == "horizontal first":
        shapes = [(height, size), (size, size)]
    else:
        shapes = [(size, width), (size, size)]
    for shape in shapes:
        if tuple(images.shape[-2:]) != shape:  # PIL skips an axis whose size does not change
            resized = TF.resize(images, list(shape), interpolation=_FILTERS[interpolation], antialias=True)
            images = resized.add_(0.5).floor_().clamp_(0, 255)  # PIL's fixed point rounds half up
    return images


@functools.cache
def pil_vertical_first_rule() -> bool:
    """Whether the installed Pillow resizes the height first when it shrinks the height much more than the width
    (Pillow 13, python-pillow/Pillow#9549; before, always the width first). Asked of Pillow itself, on one small
    noise image whose two orders give different pixels, so that another Pillow version cannot go unnoticed."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 8), dtype=np.uint8))  # 8 wide, 64 high -> 48 x 48
    direct = np.asarray(image.resize((48, 48), Image.Resampling.BILINEAR))
    vertical = image.resize((8, 48), Image.Resampling.BILINEAR).resize((48, 48), Image.Resampling.BILINEAR)
    return bool(np.array_equal(direct, np.asarray(vertical)))


def pil_pass_order(height: int, width: int, size: int) -> str:
    """The order of PIL's two passes when it resizes (height, width) to (size, size) with a convolution filter:
    ``"vertical first"`` when the height shrinks by more than twice what the width shrinks (``height - size >
    2 * (width - size)``, measured against Pillow 13.0 on ~800 random shapes, bilinear and bicubic: no exception)
    and that Pillow has the rule (:func:`pil_vertical_first_rule`), else ``"horizontal first"``. The order matters
    because PIL rounds between the passes: the wrong one is off by up to 11 levels (bicubic) at some pixels."""
    if height > size and height - size > 2 * (width - size) and pil_vertical_first_rule():
        return "vertical first"
    return "horizontal first"


@functools.cache
def pil_nearest_index(in_size: int, out_size: int) -> torch.Tensor:
    """The source index of each output pixel along one axis in PIL's nearest resize (``ImagingScaleAffine``: a
    double position that starts at half a step and adds the step, truncated). torch's ``nearest-exact`` has the
    same formula in other arithmetic, and picks the neighbour where a position falls on a pixel border exactly
    (25 of 224 columns from 256 to 224)."""
    step = in_size / out_size
    position, index = step * 0.5, []
    for _ in range(out_size):
        index.append(min(int(position), in_size - 1))
        position += step
    return torch.tensor(index, dtype=torch.long)


def normalise(levels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``ToTensor`` + ``Normalize`` on float levels 0..255, operation for operation (same float32 results)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=levels.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=levels.device).view(-1, 1, 1)
    return levels.div(255).sub_(mean_t).div_(std_t)


def shape_groups(pixels: list[torch.Tensor | None], max_values: int = 2**28) -> list[list[int]]:
    """Rows of equal image shape, so that each shape is resized in one batched call (PBC: nearly all 360x363);
    a group is split where its float32 copy would pass ``max_values`` (1 GiB), for data sets of large images."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, image in enumerate(pixels):
        if image is not None:
            groups.setdefault(tuple(image.shape), []).append(row)
    chunks = []
    for shape, rows in groups.items():
        per_chunk = max(1, max_values // (shape[0] * shape[1] * shape[2]))
        chunks += [rows[i : i + per_chunk] for i in range(0, len(rows), per_chunk)]
    return chunks


def decode_batch(
    encoded: list[torch.Tensor],
    paths: Sequence[str | Path],
    *,
    device: str | torch.device,
    size: int,
    interpolation: str = "bilinear",
    mean: Sequence[float],
    std: Sequence[float],
    skip_bad: bool = False,
    pre_resize: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch from :class:`EncodedFiles` as the model's input: ((N, 3, size, size) float32 on ``device``,
    (N,) bool ok on CPU). ``paths[i]`` is the file of ``encoded[i]`` (named in errors, read again for a
    fallback). A bad file raises :class:`BadImageError`, or with ``skip_bad`` gives a zero image and ok False,
    as in ``ImageFiles``. Raises :class:`UsageError` for an interpolation the device cannot do (lanczos).
    ``pre_resize``: first a bicubic resize to that size, as ``ExtractorEntry.transform`` does."""
    check_interpolation(interpolation)
    device = torch.device(device)
    pixels = decode_pixels(encoded, paths, device, skip_bad)
    out = torch.zeros(len(encoded), 3, size, size, dtype=torch.float32, device=device)
    for rows in shape_groups(pixels):
        levels = torch.stack([pixels[r] for r in rows]).float()  # pyright: ignore[reportArgumentType]  # shape_groups: rows not None
        if pre_resize is not None:
            levels = resize_levels(levels, pre_resize, "bicubic")
        levels = resize_levels(levels, size, interpolation)
        out[torch.tensor(rows, device=device)] = normalise(levels, mean, std)
    ok = torch.tensor([image is not None for image in pixels], dtype=torch.bool)
    return out, ok
