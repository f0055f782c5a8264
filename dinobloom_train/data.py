"""Data for the DinoBloom trainer: image sources, the two-global-crop augmentation, the dataset, iBOT collate.

Randomness (everything random here is seedable):
* ``DinoBloomAugmentation`` runs torchvision transforms, which draw from torch's global RNG. With ``generator=None``
  (the training default) that global RNG is used as is: DataLoader seeds it in every worker from its own
  ``generator`` (``base_seed + worker_id``), so ``DataLoader(..., generator=torch.Generator().manual_seed(s))``
  makes a run reproducible. With a ``torch.Generator``, each call draws a seed from it and runs the transforms
  under ``torch.random.fork_rng`` with that seed: the output depends only on the generator (and the global RNG is
  left untouched).
* ``collate_crops`` makes one ``random.Random`` per batch, seeded from its ``seed`` argument when given (the trainer
  passes the batch's first sample seed, so masks are the same whichever worker collates), else from its
  ``generator`` argument (torch's global RNG when ``None``), and passes it to the mask generator.
* Inside a DataLoader worker, a seed drawn from an explicit generator is mixed with the worker's seed
  (``get_worker_info().seed``), because every worker holds a copy of the same generator state: without the mix,
  the workers would repeat each other's crops and masks.
* ``seed_worker`` is the usual ``worker_init_fn``: it seeds ``random`` and NumPy from the worker's torch seed for
  any third-party code that uses them (nothing in this module does).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import pil_to_tensor

from bench.core.errors import BadImageError, DataError, NotFoundError, UsageError
from bench.core.files import IMAGE_EXTENSIONS
from bench.core.images import decode_rgb, to_rgb
from dinobloom_train.device_augment import ColourDraw, DeviceColour
from dinobloom_train.masking import BlockMaskGenerator

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DINOV2_RELEASED_BLUR_P",
    "DinoBloomAugmentation",
    "ImageListDataset",
    "collate_crops",
    "list_images",
    "seed_worker",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2 make_normalize_transform (timm IMAGENET_DEFAULT_MEAN)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DINOv2's GaussianBlur passes 1 - p to RandomApply, so its nominal p (1.0, 0.1) is applied as (0.0, 0.9): crop 1 is
# never blurred. Pass blur_p=DINOV2_RELEASED_BLUR_P to reproduce the released code (dinov2 PR #411, dinov3 #286).
DINOV2_RELEASED_BLUR_P = (0.0, 0.9)
_MAX_NAMED = 5  # how many missing files an error names


# ----------------------------------------------------------------------------------------------------- sources
def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, symlinks followed once, hidden files/folders skipped), sorted by
    their POSIX path relative to ``root`` (stable across platforms)."""
    found: list[tuple[str, Path]] = []
    seen_dirs: set[str] = set()

    def unreadable(error: OSError) -> None:  # os.walk would skip the folder silently
        raise DataError(f"cannot list folder {error.filename} ({error.strerror}) in the image source {root}: make it "
                        "readable or move it out of the image source") from None

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink cycle or a folder linked twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for name in filenames:
            if not _is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = Path(dirpath) / name
                found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _read_list(list_file: Path) -> tuple[list[Path], list[tuple[Path, int, str]]]:
    """Paths listed in one .txt file (blank lines and ``#`` comments skipped; relative paths resolved against the
    file's folder), and the (list file, line number, path) of those that are not files."""
    paths: list[Path] = []
    missing: list[tuple[Path, int, str]] = []
    base = list_file.parent
    try:
        with open(list_file, encoding="utf-8") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError as error:
        raise DataError(f"image list {list_file} is not UTF-8 text ({error.reason} at byte {error.start}): save it as "
                        "UTF-8, one image path per line") from None
    except OSError as error:
        raise DataError(f"cannot read image list {list_file} ({error.strerror or error}): make it readable or remove "
                        "it from the image source") from None
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry)
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            missing.append((list_file, number, entry))
        paths.append(path)
    return paths, missing


def _images_from_lists(list_files: Sequence[Path], source: Path) -> list[Path]:
    paths: list[Path] = []
    missing: list[tuple[Path, int, str]] = []
    for list_file in list_files:
        listed, absent = _read_list(list_file)
        paths.extend(listed)
        missing.extend(absent)
    if missing:
        named = "\n".join(f"  {f}:{n}: {entry}" for f, n, entry in missing[:_MAX_NAMED])
        more = f"\n  ... and {len(missing) - _MAX_NAMED} more" if len(missing) > _MAX_NAMED else ""
        raise NotFoundError(
            f"{len(missing)} of {len(paths)} image paths listed in {source} do not exist (list file:line: path):\n"
            f"{named}{more}\nFix the paths in the list file(s) (relative paths are resolved against the list "
            f"file's own folder) or remove those lines."
        )
    if not paths:
        raise DataError(
            f"no images found: the list file(s) in {source} ({', '.join(f.name for f in list_files)}) list no "
            f"paths. Write one image path per line (blank lines and '#' comments are skipped)."
        )
    return paths


def list_images(source: str | os.PathLike, kind: str = "auto") -> list[Path]:
    """The training images of ``source``.

    ``source`` is one of:

    * a folder of images: every ``.jpg .jpeg .png .tif .tiff .bmp`` file below it (any case, recursive, hidden
      files and folders skipped), sorted by relative path;
    * the DinoBloom authors' format: a folder of ``.txt`` files, each listing image paths one per line (their
      ``HemaStandardDataset`` reads ``root/*.txt``); the files are read in sorted name order and the paths kept in
      their listed order (duplicates kept). Relative paths are resolved against the list file's folder; blank lines
      and ``#`` comments are skipped;
    * a single ``.txt`` list file.

    ``kind="auto"`` treats a folder as lists when its top level holds ``.txt`` files and no image files; force
    ``"folder"`` or ``"lists"`` otherwise. Raises ``FileNotFoundError`` (missing source or listed files, the first
    few named with their list file and line) or ``ValueError`` (no images).
    """
    if kind not in ("auto", "folder", "lists"):
        raise UsageError(f"kind must be 'auto', 'folder' or 'lists', got {kind!r}")
    src = Path(source)
    if not src.exists():
        raise NotFoundError(
            f"image source not found: {src}. Pass an existing folder of images, a folder of .txt list files, or a "
            f".txt list file."
        )
    if src.is_file():
        if src.suffix.lower() != ".txt":
            raise DataError(
                f"{src} is a file but not a .txt list: pass a folder of images, a folder of .txt list files, or a "
                f".txt file listing one image path per line."
            )
        return _images_from_lists([src], src)

    if kind == "auto":
        top = [p for p in src.iterdir() if p.is_file() and not _is_hidden(p.name)]
        has_lists = any(p.suffix.lower() == ".txt" for p in top)
        has_images = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in top)
        kind = "lists" if has_lists and not has_images else "folder"

    if kind == "lists":
        list_files = sorted(
            (p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".txt" and not _is_hidden(p.name)),
            key=lambda p: p.name,
        )
        if not list_files:
            raise DataError(f"no .txt list files in {src}: add list files or use kind='folder' for an image folder.")
        return _images_from_lists(list_files, src)

    images = _walk_images(src)
    if not images:
        raise DataError(
            f"no images found in {src} (searched recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}; hidden "
            f"files skipped). Point to the folder that holds the images, or to a folder of .txt lists."
        )
    return images


# ------------------------------------------------------------------------------------------------ randomness
def _draw_seed(generator: torch.Generator | None) -> int:
    """A 62-bit seed from ``generator`` (the global torch RNG when ``None``); in a DataLoader worker, a seed from
    an explicit generator is mixed with the worker's seed so that the workers' copies do not repeat each other."""
    seed = int(torch.randint(0, 2**62, (), generator=generator).item())
    if generator is not None:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            digest = hashlib.blake2b(f"{seed}:{info.seed}".encode(), digest_size=8).digest()
            seed = int.from_bytes(digest, "little") >> 2
    return seed


def seed_worker(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """``DataLoader(worker_init_fn=seed_worker)``: seed ``random`` and NumPy from this worker's torch seed (which
    DataLoader derives from its ``generator`` and the worker id), as PyTorch's reproducibility notes recommend."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


# ---------------------------------------------------------------------------------------------- augmentation
class DinoBloomAugmentation:
    """Two global crops per image (DinoBloom: DINOv2 without local crops), torchvision v1 transforms.

    Per image: ``Resize((resize_to, resize_to), LANCZOS)`` (the authors' ``HemaStandardDataset`` resizes every
    image to 224 x 224 with LANCZOS, aspect not kept; ``resize_to=None`` means ``global_size``, ``0`` skips it).
    Then, for each of the 2 crops, in DINOv2's order:

    ============================  =====================================================  ===========================
    step                          value                                                  source
    ============================  =====================================================  ===========================
    RandomResizedCrop             size 224, scale (0.32, 1.0), ratio (3/4, 4/3), bicubic  DESIGN.md; ratio/bicubic:
                                                                                         DINOv2
    RandomHorizontalFlip          p 0.5                                                  DINOv2
    RandomVerticalFlip            p 0.5                                                  DESIGN.md (authors' code)
    90-degree rotation            RandomApply(RandomRotation((90, 90))), p 0.5, counter-  DESIGN.md (authors' code)
                                  clockwise, exact on the square crop
    ColorJitter                   brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1,  DINOv2
                                  applied with p 0.8
    RandomGrayscale               p 0.2                                                  DINOv2
    GaussianBlur                  kernel 9, sigma (0.1, 2.0); crop 1 p 1.0, crop 2 p 0.1  DINOv2 (nominal values,
                                                                                         see below)
    RandomSolarize                threshold 128, p 0.2, crop 2 only                      DINOv2
    ToTensor, Normalize           ImageNet mean/std                                      DINOv2
    ============================  =====================================================  ===========================

    ``blur_p`` is the probability that the blur is *applied*. DINOv2's released ``GaussianBlur`` inverts it (it
    hands ``1 - p`` to ``RandomApply``), so the released code never blurs crop 1 and blurs crop 2 with p 0.9; pass
    ``blur_p=DINOV2_RELEASED_BLUR_P`` to reproduce that. The authors' public repository changed these augmentations
    across commits (e.g. grayscale and solarisation commented out, blur p 0.1 on both crops, an HED jitter); the
    values here are the DESIGN.md ones.

    Every probability is a parameter so tests can switch randomness off. ``generator``: see the module docstring.
    Returns ``{"global_crops": [crop1, crop2]}``, each ``float32 (3, global_size, global_size)``.

    ``defer_colour=True`` (the trainer's ``augment_on=gpu``): only the resize and the geometric steps run here (the
    cheap part of the PIL work); each crop comes out as ``uint8 (3, global_size, global_size)`` and its colour
    parameters are drawn instead of applied, with the same torch calls in the same order, so the RNG stream and
    the crops' geometry are the CPU path's. Returns ``{"global_crops": [c1, c2], "colour_params": [p1, p2]}``
    (layout: ``dinobloom_train.device_augment``); ``device_colour()`` applies them to a batch on the device.
    """

    def __init__(
        self,
        global_size: int = 224,
        global_scale: tuple[float, float] = (0.32, 1.0),
        *,
        resize_to: int | None = None,
        global_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_p: float = 0.5,
        vflip_p: float = 0.5,
        rot90_p: float = 0.5,
        jitter_p: float = 0.8,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        grayscale_p: float = 0.2,
        blur_p: tuple[float, float] = (1.0, 0.1),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel: int = 9,
        solarize_p: float = 0.2,
        solarize_threshold: float = 128,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        generator: torch.Generator | None = None,
        defer_colour: bool = False,
    ) -> None:
        self.global_size = int(global_size)
        self.resize_to = self.global_size if resize_to is None else int(resize_to)
        self.generator = generator
        self.defer_colour = bool(defer_colour)
        self._device_colour = DeviceColour(tuple(mean), tuple(std), int(blur_kernel), float(solarize_threshold))
        bicubic, lanczos = T.InterpolationMode.BICUBIC, T.InterpolationMode.LANCZOS
        self.resize = (
            T.Resize((self.resize_to, self.resize_to), interpolation=lanczos) if self.resize_to > 0 else None
        )
        self.geometric = T.Compose(
            [
                T.RandomResizedCrop(self.global_size, scale=global_scale, ratio=global_ratio, interpolation=bicubic),
                T.RandomHorizontalFlip(p=hflip_p),
                T.RandomVerticalFlip(p=vflip_p),
                T.RandomApply([T.RandomRotation((90, 90))], p=rot90_p),
            ]
        )
        colour_jitter = T.ColorJitter(*jitter)
        gaussian_blur = T.GaussianBlur(kernel_size=blur_kernel, sigma=blur_sigma)
        colour = [T.RandomApply([colour_jitter], p=jitter_p), T.RandomGrayscale(p=grayscale_p)]
        normalize = [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]

        def blur(p: float) -> T.RandomApply:
            return T.RandomApply([gaussian_blur], p=p)

        self.crop_transforms = (
            T.Compose([*colour, blur(blur_p[0]), *normalize]),
            T.Compose(
                [*colour, blur(blur_p[1]), T.RandomSolarize(threshold=solarize_threshold, p=solarize_p), *normalize]
            ),
        )
        # defer_colour: the same draws from the same transform objects, applied later on the device
        self.colour_draws = (
            ColourDraw.from_transforms(colour_jitter, jitter_p, grayscale_p, gaussian_blur, blur_p[0]),
            ColourDraw.from_transforms(colour_jitter, jitter_p, grayscale_p, gaussian_blur, blur_p[1], solarize_p),
        )

    def _apply(self, image: Image.Image) -> dict[str, list[torch.Tensor]]:
        if self.resize is not None:
            image = self.resize(image)
        if self.defer_colour:
            return self._geometry_and_draws(image)
        crops = [transform(self.geometric(image)) for transform in self.crop_transforms]
        return {"global_crops": crops}  # pyright: ignore[reportReturnType]  # (Compose is untyped; these end in ToTensor)

    def _geometry_and_draws(self, image: Image.Image) -> dict[str, list[torch.Tensor]]:
        """Per crop, in the CPU path's order (geometry, then the colour draws): the RNG stream is the same."""
        crops, params = [], []
        for draw in self.colour_draws:
            crops.append(pil_to_tensor(self.geometric(image)).contiguous())
            params.append(draw())
        return {"global_crops": crops, "colour_params": params}

    def device_colour(self) -> DeviceColour:
        """The device step that applies this augmentation's deferred colour parameters (``defer_colour=True``)."""
        return self._device_colour

    def __call__(self, image: Image.Image) -> dict[str, list[torch.Tensor]]:
        if image.mode != "RGB":
            image = to_rgb(image)  # bench.core.images: the one rule for 16-bit, float and alpha images
        if self.generator is None:
            return self._apply(image)
        seed = _draw_seed(self.generator)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self._apply(image)

    def __repr__(self) -> str:
        parts = [repr(self.resize), repr(self.geometric), *map(repr, self.crop_transforms)]
        if self.defer_colour:
            parts.append(f"colour deferred to the device: {self._device_colour!r}")
        return "DinoBloomAugmentation(\n" + "\n".join(parts) + "\n)"


# ---------------------------------------------------------------------------------------------------- dataset
class ImageListDataset(torch.utils.data.Dataset):
    """``dataset[i] = transform(RGB PIL image of paths[i])`` (the image itself when ``transform`` is None).

    An unreadable file raises ``BadImageError`` naming it (the authors' dataset silently moved on to the next
    index instead, which hides broken files)."""

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable[[Image.Image], Any] | None = None):
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            return decode_rgb(path)  # the whole file (truncated files fail here), by bench.core.images' rule
        except BadImageError as error:  # names the file, the cause and the fix
            raise BadImageError(f"{error} (image source index {index})") from None

    def __getitem__(self, index: int) -> Any:
        image = self.load(index)
        return image if self.transform is None else self.transform(image)


# ---------------------------------------------------------------------------------------------------- collate
def collate_crops(
    samples: Sequence[Any],
    mask_generator: BlockMaskGenerator,
    mask_probability: float = 0.5,
    mask_ratio: tuple[float, float] = (0.1, 0.5),
    n_tokens: int | tuple[int, int] | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Batch the crops and draw the iBOT masks (DINOv2's ``collate_data_and_cast`` semantics, without local crops).

    ``samples``: augmentation outputs (``{"global_crops": [c1, c2]}``) or tuples whose first item is one (DINOv2's
    ``(image, target)``). ``n_tokens``: the patch grid ``(H, W)`` (an int means ``N = H * W``); ``None`` takes it
    from ``mask_generator``, and a grid that differs from the generator's raises ``ValueError``.

    Masks, as DINOv2 draws them: of the ``M = 2B`` crops, exactly ``m = int(M * mask_probability)`` are masked (so
    the masked *fraction* is ``mask_probability`` up to the floor, not a coin flip per crop: ``M = 2`` with
    ``p = 0.3`` masks none). Their ratios are stratified: ``linspace(lo, hi, m + 1)`` cuts ``mask_ratio`` into ``m``
    bins and masked crop ``i`` asks for ``int(N * uniform(bin_i))`` patches (so ratios are ~uniform on
    ``[lo, hi]`` and the batch mean is ~``(lo + hi) / 2``); the other crops get empty masks; then the ``M`` masks
    are shuffled across crops.

    Returns:
        ``global_crops``: ``(2B, 3, S, S)``, crop 0 of every image then crop 1 (DINOv2's order; cast to ``dtype``
        when given, except uint8 crops whose colour is deferred: the device step converts those);
        ``colour_params``: only for samples with deferred colour (``defer_colour=True``), ``(2B, N_PARAMS)`` float32
        in the crops' order; ``masks``: ``(2B, N)`` bool; ``mask_indices``: long, flat indices into
        ``masks.flatten()`` of the masked patches; ``n_masked``: long tensor of shape ``(1,)`` (DINOv2's
        ``n_masked_patches``); ``masks_weight``: float32, one per masked patch, ``1 / (masked patches of its
        crop)`` (sums to 1 per masked crop); ``upperbound``: int, ``sum(int(N * bin_max))`` (DINOv2's buffer
        bound for the masked tokens).
    """
    if not samples:
        raise ValueError("collate_crops needs at least one sample")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    lo, hi = float(mask_ratio[0]), float(mask_ratio[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"mask_ratio must satisfy 0 <= min <= max <= 1, got {mask_ratio}")
    grid = mask_generator.input_size
    n_patches = grid[0] * grid[1]
    if n_tokens is not None:
        wanted = n_tokens if isinstance(n_tokens, int) else int(n_tokens[0]) * int(n_tokens[1])
        if (not isinstance(n_tokens, int) and tuple(int(v) for v in n_tokens) != grid) or wanted != n_patches:
            raise ValueError(f"n_tokens {n_tokens} does not match the mask generator's grid {grid}")

    dicts = [s[0] if isinstance(s, (tuple, list)) else s for s in samples]
    n_crops = len(dicts[0]["global_crops"])
    def crop_major(key: str) -> torch.Tensor:  # crop 0 of every image, then crop 1 (DINOv2's order)
        return torch.stack([d[key][i] for i in range(n_crops) for d in dicts])

    crops = crop_major("global_crops")
    deferred = "colour_params" in dicts[0]
    if dtype is not None and not deferred:
        crops = crops.to(dtype)

    # ``seed``: the caller's own per-batch seed, used as is (no worker mixing): the trainer derives it from the
    # batch's samples so that the masks do not depend on which worker, or which DataLoader, collates the batch
    rng = random.Random(seed if seed is not None else _draw_seed(generator))
    total = len(crops)
    n_masked_crops = int(total * mask_probability)
    edges = np.linspace(lo, hi, n_masked_crops + 1).tolist()
    masks: list[np.ndarray] = []
    upperbound = 0
    for i in range(n_masked_crops):
        ratio = rng.uniform(edges[i], edges[i + 1])
        masks.append(mask_generator(int(n_patches * ratio), rng=rng).reshape(-1))
        upperbound += int(n_patches * edges[i + 1])
    empty = np.zeros(n_patches, dtype=bool)
    masks.extend(empty for _ in range(total - n_masked_crops))
    rng.shuffle(masks)

    collated = torch.from_numpy(np.stack(masks))
    mask_indices = collated.flatten().nonzero().flatten()
    per_crop = collated.sum(-1, keepdim=True).clamp(min=1).to(torch.float32)
    masks_weight = (1.0 / per_crop).expand_as(collated)[collated]
    batch = {
        "global_crops": crops,
        "masks": collated,
        "mask_indices": mask_indices,
        "n_masked": torch.full((1,), mask_indices.numel(), dtype=torch.long),
        "masks_weight": masks_weight,
        "upperbound": upperbound,
    }
    if deferred:  # in the crops' order
        batch["colour_params"] = crop_major("colour_params")
    return batch
