"""bench.decode (``--decode gpu``): the batched device path gives the PIL path's input to within one 8-bit level,
for JPEGs and for every file the device decoder must not see, and fails on bad files the way ImageFiles does.

Tolerance: one level after normalisation, ``1 / (255 * min(std))`` (0.0175 for ImageNet's std). PIL resizes in
fixed point and rounds each pass to 8 bits; :func:`bench.decode.resize_levels` rounds float32 results the same
way, so a value that lies within float32 error of a half level can round the other way. Measured on 400 PBC JPEGs
(``benchmarks/bench_decode.py``): never more than one level; one level in 0.07 % (bilinear) / 0.004 % (bicubic)
of the values; nearest exact. On generated images with up- and downscaling: one level in 0.9 % (bilinear, whose
simple weights make exact half levels common) / 0.003 % (bicubic).
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.errors import BadImageError, UsageError
from bench.decode import (
    EncodedFiles,
    collate_encoded,
    decode_batch,
    pil_pass_order,
    pil_vertical_first_rule,
    resize_levels,
    resolve_decode,
    shape_groups,
)
from bench.extract import ImageFiles
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, ExtractorEntry
from tests.conftest import PBC, real_data_absent

LEVEL = 1 / (255 * min(IMAGENET_STD))
SIZE = 48


def entry(interpolation: str = "bilinear", size: int = SIZE) -> ExtractorEntry:
    return ExtractorEntry(name="t", family="t", architecture="t", dim=1, build_fn=lambda e: None,
                          input_size=size, interpolation=interpolation)


def noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: both edges (where resamplers differ most) and flat ramps."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    pixels = ramp + rng.normal(0, 40, (h, w, channels))
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture
def mixed_files(tmp_path):
    """One file of each kind the harness meets: JPEGs of two sizes (two of one size: one resize group), gray and
    CMYK and progressive JPEGs, PNG, RGBA PNG and 16-bit PNG."""
    files = {}

    def save(name, image, **kw):
        files[name] = tmp_path / name
        image.save(files[name], **kw)

    save("rgb_a.jpg", Image.fromarray(noise(60, 72, seed=1)), quality=90)
    save("rgb_b.jpg", Image.fromarray(noise(60, 72, seed=2)), quality=90)
    save("rgb_small.jpg", Image.fromarray(noise(30, 26, seed=3)), quality=90)  # upscaled to SIZE
    save("gray.jpg", Image.fromarray(noise(50, 40, 1, seed=4)[..., 0]))
    save("cmyk.jpg", Image.fromarray(noise(40, 50, seed=5)).convert("CMYK"))
    save("progressive.jpg", Image.fromarray(noise(56, 64, seed=6)), progressive=True)
    save("plain.png", Image.fromarray(noise(64, 40, seed=7)))
    save("rgba.png", Image.fromarray(noise(40, 64, 4, seed=8)))
    save("deep.png", Image.fromarray(noise(52, 44, 1, seed=9)[..., 0].astype(np.uint16) * 257))  # I;16
    return files


def pil_path(paths, e: ExtractorEntry, skip_bad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """What extraction feeds the model today: ImageFiles items, stacked."""
    dataset = ImageFiles(paths, e.transform(), e.input_size, skip_bad)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([t for t, _, _ in items]), torch.tensor([ok for _, _, ok in items])


def device_path(paths, e: ExtractorEntry, device: str = "cpu", skip_bad: bool = False):
    """The new path, through a DataLoader as extraction will use it."""
    loader = torch.utils.data.DataLoader(EncodedFiles(paths, skip_bad), batch_size=len(paths),
                                         collate_fn=collate_encoded)
    (encoded, indices, _), = list(loader)
    images, ok = decode_batch(encoded, [paths[i] for i in indices], device=device, size=e.input_size,
                              interpolation=e.interpolation, mean=e.mean, std=e.std, skip_bad=skip_bad)
    return images, ok


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_matches_the_pil_path_within_one_level(mixed_files, interpolation):
    paths = list(mixed_files.values())
    e = entry(interpolation)
    expected, _ = pil_path(paths, e)
    images, ok = device_path(paths, e)
    diff = (images - expected).abs()
    assert ok.all()
    assert diff.max() <= LEVEL + 1e-5, {p.name: float(d.max()) for p, d in zip(paths, diff)}
    assert diff.mean() < 0.05 * LEVEL  # one level at a few values, not a shift
    if interpolation == "nearest":
        assert diff.max() == 0


SHAPES = [(h, w) for h in (20, 47, 64, 100, 150) for w in (20, 47, 64, 100, 150)]  # to 48: up, down, mixed


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_resize_follows_pil_on_up_down_and_mixed_shapes(interpolation):
    """Both pass orders (Pillow 13 shrinks a much taller image's height first), upscaling, and nearest's ties
    (64 -> 48 and 100 -> 48 put sample positions exactly on pixel borders)."""
    resample = getattr(Image.Resampling, interpolation.upper())
    worst, differing, total = 0, 0, 0
    for seed, (h, w) in enumerate(SHAPES):
        pixels = noise(h, w, seed=seed)
        expected = torch.from_numpy(np.array(Image.fromarray(pixels).resize((48, 48), resample))).permute(2, 0, 1)
        got = resize_levels(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), 48, interpolation)[0]
        diff = (got - expected.float()).abs()
        worst, differing, total = max(worst, float(diff.max())), differing + int((diff > 0).sum()), total + diff.numel()
    assert worst <= (0 if interpolation == "nearest" else 1)
    assert differing / total < 0.02  # measured 0.9 % (bilinear: exact half levels, that float32 misses by an ulp)
    orders = {pil_pass_order(h, w, 48) for h, w in SHAPES}
    assert orders == ({"horizontal first", "vertical first"} if pil_vertical_first_rule() else {"horizontal first"})


def test_shape_groups_keep_rows_and_split_large_groups():
    pixels = [torch.zeros(3, 4, 5), None, torch.zeros(3, 4, 5), torch.zeros(3, 2, 2), torch.zeros(3, 4, 5)]
    assert shape_groups(pixels) == [[0, 2, 4], [3]]
    assert shape_groups(pixels, max_values=2 * 60) == [[0, 2], [4], [3]]


def test_workers_hand_on_jpeg_bytes_and_decode_the_rest(mixed_files):
    """The worker decodes non-JPEG and CMYK files by decode_rgb and hands pixels (3-D), JPEG bytes (1-D)."""
    dataset = EncodedFiles(list(mixed_files.values()), skip_bad=False)
    kinds = {path.name: dataset[i][0].ndim for i, path in enumerate(dataset.paths)}
    assert kinds == {"rgb_a.jpg": 1, "rgb_b.jpg": 1, "rgb_small.jpg": 1, "gray.jpg": 1, "cmyk.jpg": 3,
                     "progressive.jpg": 1, "plain.png": 3, "rgba.png": 3, "deep.png": 3}


def test_shape_dtype_device_and_order(mixed_files):
    paths = list(mixed_files.values())
    images, ok = device_path(paths, entry(size=32))
    assert images.shape == (len(paths), 3, 32, 32) and images.dtype == torch.float32
    assert images.device.type == "cpu" and ok.dtype == torch.bool and ok.shape == (len(paths),)
    # order kept across resize groups: each row equals the row decoded alone
    alone, _ = device_path(paths[2:3], entry(size=32))
    assert torch.equal(images[2], alone[0])


def truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def corrupt_jpeg_with_end_marker(tmp_path):
    """Passes the worker's checks (magic, end marker, header) but the decoder refuses its scan."""
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buf, "JPEG")
    raw = buf.getvalue()
    path = tmp_path / "scrambled.jpg"
    path.write_bytes(raw[: len(raw) // 3] + b"\xff\x78" + b"\x00" * 64 + b"\xff\xd9")
    return path


@pytest.mark.parametrize("make", [truncated_jpeg, corrupt_jpeg_with_end_marker])
def test_a_bad_file_fails_as_in_image_files(tmp_path, mixed_files, make):
    bad = make(tmp_path)
    paths = [mixed_files["rgb_a.jpg"], bad]
    try:
        pil_path(paths, entry())
    except BadImageError as exc:
        expected = str(exc)
    else:
        pytest.skip("PIL reads this file (its scan decodes with warnings); nothing to refuse")
    with pytest.raises(BadImageError) as raised:
        device_path(paths, entry())
    assert str(raised.value) == expected
    assert str(bad) in expected and "--skip-bad-images" in expected


@pytest.mark.parametrize("make", [truncated_jpeg, corrupt_jpeg_with_end_marker])
def test_skip_bad_gives_a_zero_image(tmp_path, mixed_files, make):
    bad = make(tmp_path)
    paths = [mixed_files["rgb_a.jpg"], bad, mixed_files["plain.png"]]
    expected, expected_ok = pil_path(paths, entry(), skip_bad=True)
    images, ok = device_path(paths, entry(), skip_bad=True)
    assert ok.tolist() == expected_ok.tolist()
    assert (images - expected).abs().max() <= LEVEL + 1e-5
    if not ok[1]:
        assert torch.count_nonzero(images[1]) == 0


def test_a_missing_file_is_named(tmp_path, mixed_files):
    missing = tmp_path / "gone.jpg"
    with pytest.raises(BadImageError, match="gone.jpg.*--skip-bad-images"):
        device_path([mixed_files["rgb_a.jpg"], missing], entry())


def test_decode_batch_refuses_lanczos(mixed_files):
    encoded = [EncodedFiles([mixed_files["rgb_a.jpg"]], False)[0][0]]
    with pytest.raises(UsageError, match="lanczos.*--decode cpu"):
        decode_batch(encoded, [mixed_files["rgb_a.jpg"]], device="cpu", size=SIZE, interpolation="lanczos",
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)


def test_resolve_decode():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_decode("auto", cpu, "bilinear") == "cpu"
    assert resolve_decode("auto", cuda, "bilinear") == "gpu"
    assert resolve_decode("auto", cuda, "lanczos") == "cpu"
    assert resolve_decode("cpu", cuda, "lanczos") == "cpu"
    with pytest.raises(UsageError, match="CUDA"):
        resolve_decode("gpu", cpu, "bilinear")
    with pytest.raises(UsageError, match="--decode cpu"):
        resolve_decode("gpu", cuda, "lanczos")
    with pytest.raises(UsageError, match="not one of"):
        resolve_decode("tpu", cpu, "bilinear")


@pytest.fixture
def pbc_eight(tmp_path):
    """One real PBC image per class (skipped when ../shared/data/pbc is absent)."""
    labeled = PBC / "labeled"
    if not labeled.is_dir():
        pytest.skip(real_data_absent(labeled))
    paths = []
    for class_dir in sorted(p for p in labeled.iterdir() if p.is_dir()):
        first = min(class_dir.glob("*.jpg"))
        paths.append(tmp_path / first.name)
        shutil.copy(first, paths[-1])
    return paths


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_real_pbc_images_match_the_pil_path(pbc_eight, interpolation):
    e = entry(interpolation, size=224)
    expected, _ = pil_path(pbc_eight, e)
    images, ok = device_path(pbc_eight, e)
    diff = (images - expected).abs()
    assert ok.all() and diff.max() <= LEVEL + 1e-5
    assert (diff > 1e-4).float().mean() < 0.005  # measured 0.13 % (bilinear) on 400 images


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_cuda_matches_cpu(mixed_files, interpolation):
    """nvJPEG is another JPEG decoder than libjpeg-turbo (torchvision allows a mean difference < 2 levels
    between them); the resize and normalise math is the same float32 on both."""
    paths = list(mixed_files.values())
    e = entry(interpolation)
    on_cpu, _ = device_path(paths, e)
    on_cuda, ok = device_path(paths, e, device="cuda")
    assert on_cuda.device.type == "cuda" and ok.all()
    diff = (on_cuda.cpu() - on_cpu).abs()
    jpeg = [i for i, p in enumerate(paths) if p.suffix == ".jpg" and p.name != "cmyk.jpg"]
    others = [i for i in range(len(paths)) if i not in jpeg]
    assert diff[others].max() <= LEVEL + 1e-5  # PIL pixels on both: only the float resize may round apart
    assert diff[jpeg].mean() < 2 * LEVEL


def test_extraction_with_gpu_decoding_wired_through_the_harness(tmp_path, monkeypatch):
    """``--decode gpu`` as the harness runs it (the device faked by the CPU, whose decode_batch is the same
    math): features within rounding of the PIL path's, for PNGs and a JPEG, and a cache key of their own."""
    import bench.decode as decode
    import bench.extract as extract
    from bench.runner import RunOptions, load_pair
    from tests.conftest import TINY, make_image_folder

    folder = make_image_folder(tmp_path / "cells", {"a": 6, "b": 6})
    Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(folder / "a" / "photo.jpg", quality=95)
    options = RunOptions(progress=False, skip_bad_images=True, batch_size=5)
    pil = load_pair(TINY, f"imagefolder:{folder}", options, log=print)

    def fake_gpu(requested, device, interpolation):
        return "gpu" if requested == "gpu" else "cpu"

    monkeypatch.setattr(decode, "resolve_decode", fake_gpu)
    monkeypatch.setattr(extract, "resolve_decode", fake_gpu)
    used = []
    real = decode.decode_batch
    monkeypatch.setattr(extract, "decode_batch", lambda *a, **k: used.append(k["device"]) or real(*a, **k))
    gpu = load_pair(TINY, f"imagefolder:{folder}", RunOptions(progress=False, skip_bad_images=True, batch_size=5,
                                                               decode="gpu"), log=print)
    assert used and gpu.extractor.fingerprint["transform"]["decode"].startswith("gpu")
    assert "decode" not in pil.extractor.fingerprint["transform"]
    assert gpu.cached.manifest["key"] != pil.cached.manifest["key"]
    assert len(gpu.features) == len(pil.features) == 13
    a, b = pil.features, gpu.features
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
