"""DinoBloom trainer data: image sources, two-global-crop augmentation, dataset, block masks, iBOT collate."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torchvision import transforms as T

from bench.core.errors import BadImageError
from dinobloom_train.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DinoBloomAugmentation,
    ImageListDataset,
    collate_crops,
    list_images,
    seed_worker,
)
from dinobloom_train.masking import BlockMaskGenerator
from tests.conftest import PBC, real_data_absent

PBC_UNLABELED = PBC / "unlabeled"


def _save(path: Path, size=(20, 16), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _asymmetric(size: int = 224) -> Image.Image:
    """No symmetry under flips or rotations: two gradients plus a marker block near one corner."""
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([x * 255 // size, y * 255 // size, (x * y) % 256], axis=-1).astype(np.uint8)
    pixels[10:30, 40:50] = (255, 0, 0)
    return Image.fromarray(pixels)


def _blood_cell_like(size=(363, 360), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal((200, 170, 190), 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


# ------------------------------------------------------------------------------------------------- list_images
def test_list_images_folder_recursive_sorted_hidden_skipped(tmp_path):
    root = tmp_path / "imgs"
    expected = [
        _save(root / "a.PNG"),
        _save(root / "b" / "c.jpeg"),
        _save(root / "b" / "d.tif"),
        _save(root / "z.jpg"),
    ]
    _save(root / ".hidden.jpg")
    _save(root / ".cache" / "e.png")
    (root / "notes.md").write_text("not an image")
    (root / "b" / "x.txt").write_text("b/c.jpeg\n")  # a .txt below the top level does not switch to list mode
    assert list_images(root) == expected
    assert list_images(str(root), kind="folder") == expected


def test_list_images_txt_lists_relative_absolute_and_single_file(tmp_path):
    data = tmp_path / "data"
    a, b, c = (_save(data / "cells" / f"{n}.jpg", seed=i) for i, n in enumerate("abc"))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "1_first.txt").write_text("# comment\n\n../data/cells/b.jpg\n   ../data/cells/a.jpg  \n")
    (lists / "2_second.txt").write_text(f"{c}\r\n\n")  # absolute path, Windows line ending
    got = list_images(lists)
    assert [p.resolve() for p in got] == [b, a, c]  # list files in name order, lines in listed order
    assert [p.resolve() for p in list_images(lists / "2_second.txt")] == [c]
    # a folder with both top-level images and .txt files is an image folder unless told otherwise
    (data / "cells" / "list.txt").write_text("a.jpg\n")
    assert list_images(data / "cells") == [a, b, c]
    assert [p.resolve() for p in list_images(data / "cells", kind="lists")] == [a]


def test_list_images_errors_name_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="image source not found") as err:
        list_images(missing)
    assert str(missing) in str(err.value)

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="no images found") as err:
        list_images(empty)
    assert str(empty) in str(err.value)

    lists = tmp_path / "lists"
    lists.mkdir()
    _save(lists / "ok.png")
    (lists / "train.txt").write_text("ok.png\n" + "".join(f"gone_{i}.jpg\n" for i in range(7)))
    with pytest.raises(FileNotFoundError) as err:
        list_images(lists / "train.txt")
    message = str(err.value)
    assert "7 of 8" in message and str(lists / "train.txt") in message
    assert "gone_0.jpg" in message and "gone_4.jpg" in message and "gone_5.jpg" not in message
    assert "and 2 more" in message and "relative paths are resolved" in message

    only_comments = tmp_path / "c"
    only_comments.mkdir()
    (only_comments / "l.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="list no paths"):
        list_images(only_comments)
    with pytest.raises(ValueError, match="not a .txt list"):
        list_images(lists / "ok.png")



def test_unreadable_lists_and_folders_are_errors_naming_them(tmp_path, monkeypatch):
    import os

    from bench.core.errors import DataError

    _save(tmp_path / "ok.png")
    (tmp_path / "latin1.txt").write_bytes("ok.png\nd\xe9j\xe0.png\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as err:
        list_images(tmp_path / "latin1.txt")
    assert str(tmp_path / "latin1.txt") in str(err.value)

    root = tmp_path / "imgs"  # a folder that cannot be listed: os.walk alone would skip it without a word
    _save(root / "a" / "1.png")
    _save(root / "locked" / "2.png")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="cannot list folder") as err:
        list_images(root)
    assert str(root / "locked") in str(err.value) and "Permission denied" in str(err.value)

# ------------------------------------------------------------------------------------------------ augmentation
def test_augmentation_on_a_real_pbc_image():
    if not PBC_UNLABELED.is_dir():
        pytest.skip(real_data_absent(PBC_UNLABELED))
    path = sorted(PBC_UNLABELED.glob("*.jpg"))[0]
    image = ImageListDataset([path]).load(0)
    out = DinoBloomAugmentation(generator=torch.Generator().manual_seed(0))(image)
    assert list(out) == ["global_crops"] and len(out["global_crops"]) == 2
    for crop in out["global_crops"]:
        assert crop.shape == (3, 224, 224) and crop.dtype == torch.float32 and torch.isfinite(crop).all()
    assert not torch.equal(*out["global_crops"])


def test_augmentation_shapes_difference_and_seeded_determinism():
    image = _blood_cell_like()
    aug = DinoBloomAugmentation(global_size=96, generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    first = aug(image)["global_crops"]
    assert torch.equal(torch.get_rng_state(), state)  # an explicit generator leaves the global RNG alone
    assert [c.shape for c in first] == [(3, 96, 96)] * 2 and first[0].dtype == torch.float32
    assert not torch.equal(first[0], first[1])
    again = DinoBloomAugmentation(global_size=96, generator=torch.Generator().manual_seed(3))(image)["global_crops"]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    other = DinoBloomAugmentation(global_size=96, generator=torch.Generator().manual_seed(4))(image)["global_crops"]
    assert not torch.equal(first[0], other[0])
    # default: torch's global RNG (what DataLoader seeds per worker)
    plain = DinoBloomAugmentation(global_size=96)
    torch.manual_seed(11)
    x = plain(image)["global_crops"]
    torch.manual_seed(11)
    y = plain(image.convert("L"))["global_crops"]  # any mode is converted to RGB
    assert x[0].shape == y[0].shape == (3, 96, 96)
    torch.manual_seed(11)
    z = plain(image)["global_crops"]
    assert all(torch.equal(a, b) for a, b in zip(x, z))


def _deterministic(**overrides) -> DinoBloomAugmentation:
    kwargs = dict(
        global_size=224, global_scale=(1.0, 1.0), global_ratio=(1.0, 1.0), resize_to=224, hflip_p=0.0, vflip_p=0.0,
        rot90_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=0.0,
    )
    kwargs.update(overrides)
    return DinoBloomAugmentation(**kwargs, generator=torch.Generator().manual_seed(0))


def test_flips_and_rotation_are_exact_when_forced():
    image = _asymmetric()
    base = _deterministic()(image)["global_crops"]
    reference = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToTensor()(image))
    assert torch.equal(base[0], reference) and torch.equal(base[1], reference)
    expected = {
        "hflip_p": torch.flip(reference, dims=[-1]),
        "vflip_p": torch.flip(reference, dims=[-2]),
        "rot90_p": torch.rot90(reference, 1, dims=(-2, -1)),  # counter-clockwise
    }
    for name, want in expected.items():
        crops = _deterministic(**{name: 1.0})(image)["global_crops"]
        assert not torch.equal(want, reference)
        assert torch.equal(crops[0], want) and torch.equal(crops[1], want), name
    both = _deterministic(vflip_p=1.0, rot90_p=1.0)(image)["global_crops"][0]
    assert torch.equal(both, torch.rot90(expected["vflip_p"], 1, dims=(-2, -1)))


def test_vertical_flip_and_rotation_happen_about_half_the_time():
    image = _asymmetric(32)
    reference = _deterministic(global_size=32, resize_to=32)(image)["global_crops"][0]
    for name, flipped in (
        ("vflip_p", torch.flip(reference, dims=[-2])),
        ("rot90_p", torch.rot90(reference, 1, dims=(-2, -1))),
    ):
        aug = _deterministic(global_size=32, resize_to=32, **{name: 0.5})
        hits = 0
        for _ in range(40):
            for crop in aug(image)["global_crops"]:
                assert torch.equal(crop, reference) or torch.equal(crop, flipped)
                hits += torch.equal(crop, flipped)
        assert 20 <= hits <= 60, (name, hits)  # 80 crops, p 0.5


def test_resize_uses_lanczos_to_the_preset_size():
    image = _blood_cell_like((363, 360))
    aug = _deterministic(global_size=64, resize_to=64)
    want = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToTensor()(image.resize((64, 64), Image.Resampling.LANCZOS)))
    assert torch.equal(aug(image)["global_crops"][0], want)


# ----------------------------------------------------------------------------------------------------- dataset
def test_image_list_dataset_returns_transform_output_and_names_unreadable_files(tmp_path):
    good = _save(tmp_path / "good.png", size=(40, 30))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    ds = ImageListDataset([good, bad], DinoBloomAugmentation(global_size=32))
    assert len(ds) == 2
    assert [c.shape for c in ds[0]["global_crops"]] == [(3, 32, 32)] * 2
    with pytest.raises(BadImageError, match="bad.jpg") as err:
        ds[1]
    assert str(bad) in str(err.value)
    assert ImageListDataset([good]).load(0).mode == "RGB"


def test_dataloader_workers_do_not_repeat_each_other_and_are_reproducible(tmp_path):
    path = _save(tmp_path / "one.png", size=(48, 48))
    ds = ImageListDataset([path] * 4, DinoBloomAugmentation(global_size=16, generator=torch.Generator().manual_seed(0)))

    def crops(seed):
        loader = torch.utils.data.DataLoader(
            ds, batch_size=1, num_workers=2, worker_init_fn=seed_worker, multiprocessing_context="fork",
            generator=torch.Generator().manual_seed(seed),
        )
        return [batch["global_crops"][0][0] for batch in loader]

    first = crops(0)
    assert len(first) == 4
    assert all(not torch.equal(first[i], first[j]) for i in range(4) for j in range(i + 1, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, crops(0)))


# ----------------------------------------------------------------------------------------------------- masking
def _boundary_per_patch(mask: np.ndarray) -> float:
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    return edges / max(mask.sum(), 1)


def test_block_masks_have_the_exact_count_and_block_structure():
    gen = BlockMaskGenerator((16, 16), max_num_patches=128)
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    for n in (0, 1, 3, 4, 25, 64, 128, 200, 256):
        mask = gen(n, rng=rng)
        assert mask.shape == (16, 16) and mask.dtype == bool and mask.sum() == n
    components, scatter_components, boundary, scatter_boundary = [], [], [], []
    for _ in range(200):
        n = rng.randint(25, 128)
        mask = gen(n, rng=rng)
        assert mask.sum() == n
        scatter = np.zeros(256, dtype=bool)
        scatter[noise.choice(256, n, replace=False)] = True
        scatter = scatter.reshape(16, 16)
        components.append(ndimage.label(mask)[1])
        scatter_components.append(ndimage.label(scatter)[1])
        boundary.append(_boundary_per_patch(mask))
        scatter_boundary.append(_boundary_per_patch(scatter))
    # measured: ~2.6 components (max 5) vs ~31 for scattered patches; boundary 0.75 vs 2.65 edges per patch
    assert np.mean(components) < 4 and max(components) <= 8
    assert np.mean(components) < 0.2 * np.mean(scatter_components)
    assert np.mean(boundary) < 0.5 * np.mean(scatter_boundary)


def test_block_mask_generator_seeding_limits_and_dinov2_mode():
    gen = BlockMaskGenerator(16, max_num_patches=0.5 * 16 * 16)
    assert gen.input_size == (16, 16)
    assert np.array_equal(gen(60, rng=random.Random(5)), gen(60, rng=random.Random(5)))
    torch.manual_seed(2)
    a = gen(60)
    torch.manual_seed(2)
    assert np.array_equal(a, gen(60))
    with pytest.raises(ValueError, match="cannot mask 257"):
        gen(257)
    dinov2 = BlockMaskGenerator((16, 16), max_num_patches=128, exact=False)
    rng = random.Random(0)
    counts = [(n, dinov2(n, rng=rng).sum()) for n in (rng.randint(25, 128) for _ in range(300))]
    assert all(got <= n for n, got in counts)  # DINOv2 never overshoots, sometimes stops short
    assert sum(got == n for n, got in counts) > 0.8 * len(counts)
    assert any(got < n for n, got in counts)  # what exact=True (the default) tops up


# ----------------------------------------------------------------------------------------------------- collate
def _samples(n_images: int, size: int = 4) -> list[dict]:
    return [
        {"global_crops": [torch.full((3, size, size), 10.0 * b + k) for k in range(2)]} for b in range(n_images)
    ]


def test_collate_order_shapes_and_weights():
    gen = BlockMaskGenerator((16, 16), max_num_patches=128)
    samples = _samples(5)
    batch = collate_crops(samples, gen, n_tokens=(16, 16), generator=torch.Generator().manual_seed(0))
    crops = batch["global_crops"]
    assert crops.shape == (10, 3, 4, 4)
    assert [float(c[0, 0, 0]) for c in crops] == [0, 10, 20, 30, 40, 1, 11, 21, 31, 41]  # crop 0s, then crop 1s
    masks = batch["masks"]
    assert masks.shape == (10, 256) and masks.dtype == torch.bool
    assert int((masks.sum(1) > 0).sum()) == 5
    assert torch.equal(batch["mask_indices"], masks.flatten().nonzero().flatten())
    assert batch["n_masked"].tolist() == [int(masks.sum())] and batch["n_masked"].dtype == torch.long
    owner = batch["mask_indices"] // 256
    sums = torch.zeros(10).index_add_(0, owner, batch["masks_weight"])
    assert torch.allclose(sums[masks.any(1)], torch.ones(5)) and (sums[~masks.any(1)] == 0).all()
    assert batch["upperbound"] >= int(masks.sum())
    # (image, target) tuples as DINOv2's datasets return, dtype cast, seeded reproducibility
    tuples = [(s, 0) for s in samples]
    again = collate_crops(tuples, gen, dtype=torch.float16, generator=torch.Generator().manual_seed(0))
    assert again["global_crops"].dtype == torch.float16 and torch.equal(again["masks"], masks)
    with pytest.raises(ValueError, match="does not match"):
        collate_crops(samples, gen, n_tokens=(14, 14))


def test_collate_mask_statistics_over_many_batches():
    gen = BlockMaskGenerator((16, 16), max_num_patches=128)
    g = torch.Generator().manual_seed(1)
    samples = _samples(8, size=1)
    masked_flags, ratios = [], []
    for _ in range(150):
        masks = collate_crops(samples, gen, mask_probability=0.5, mask_ratio=(0.1, 0.5), generator=g)["masks"]
        counts = masks.sum(1)
        masked_flags.extend((counts > 0).tolist())
        ratios.extend((counts[counts > 0] / 256).tolist())
    assert abs(np.mean(masked_flags) - 0.5) < 0.02  # DINOv2: exactly int(2B * p) crops of each batch
    assert min(ratios) >= int(0.1 * 256) / 256 and max(ratios) <= 0.5
    assert abs(np.mean(ratios) - 0.3) < 0.02
    # which crops are masked varies across batches (shuffled)
    per_position = torch.stack(
        [collate_crops(samples, gen, generator=g)["masks"].any(1) for _ in range(50)]
    ).float().mean(0)
    assert (per_position > 0.2).all() and (per_position < 0.8).all()
    small = collate_crops(_samples(5), gen, mask_probability=0.3, generator=g)["masks"]
    assert int(small.any(1).sum()) == 3  # int(10 * 0.3)


def test_loader_workers_default_to_the_cores_on_cuda(monkeypatch):
    import os

    from dinobloom_train.train import loader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert loader_workers(-1, cuda) == 15  # one core left for the training process itself
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun, 8 GPUs on the node: the cores are shared
    assert loader_workers(-1, cuda) == 1
    assert loader_workers(-1, cpu) == 2 and loader_workers(5, cuda) == 5 and loader_workers(0, cuda) == 0
