"""augment_on=gpu: the colour half of the augmentation on the training device (run here on CPU tensors)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from bench.core.errors import UsageError
from dinobloom_train import device_augment as da
from dinobloom_train.config import TrainConfig, get_preset
from dinobloom_train.data import IMAGENET_MEAN, IMAGENET_STD, DinoBloomAugmentation, collate_crops
from dinobloom_train.masking import BlockMaskGenerator
from tests.conftest import make_image_folder
from tests.test_train import SMALL

_REFERENCE_OPS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)


def _image(size: int = 64, seed: int = 0) -> Image.Image:
    """No symmetry under flips or rotations, with some noise so crops differ everywhere."""
    y, x = np.mgrid[0:size, 0:size]
    noise = np.random.default_rng(seed).integers(0, 40, (size, size))
    pixels = np.stack([x * 200 // size + noise, y * 200 // size, (x * y) % 256], axis=-1).clip(0, 255)
    pixels = pixels.astype(np.uint8)
    pixels[5:12, 20:30] = (255, 0, 0)
    return Image.fromarray(pixels)


def _hand_set_params(n: int, rng: np.random.Generator) -> torch.Tensor:
    """Every jitter order (24 permutations), slots switched off, every other op on and off, wide factors."""
    params = torch.zeros(n, da.N_PARAMS)
    permutations = list(itertools.permutations(range(4)))
    for i in range(n):
        row = params[i]
        row[da.FACTORS] = torch.tensor([rng.uniform(0.0, 2.0), rng.uniform(0.0, 2.0), rng.uniform(0.0, 2.0),
                                        rng.uniform(-0.5, 0.5)], dtype=torch.float32)
        order = list(permutations[i // 3 % 24])  # each permutation on 3 crops in a row, 2 of them jittered
        if i % 3 == 0:  # jitter not applied: no op runs
            row[da.FACTORS] = torch.tensor([1.0, 1.0, 1.0, 0.0])
            order = [-1] * 4
        else:
            row[da.JITTER] = 1.0
            if i % 7 == 1:  # a factor switched off (ColorJitter with 0 for it): its slot does not run
                order[i % 4] = -1
        row[da.ORDER] = torch.tensor(order, dtype=torch.float32)
        row[da.GRAYSCALE] = float(i % 5 == 2)
        if i % 2:
            row[da.BLUR], row[da.SIGMA] = 1.0, float(rng.uniform(0.1, 2.0))
        row[da.SOLARIZE] = float(i % 4 == 1)
    return params


def _reference(crop: torch.Tensor, row: torch.Tensor, kernel: int = 9, threshold: float = 128) -> torch.Tensor:
    """One sample at a time, torchvision's v2 functionals with scalar parameters, in the drawn order."""
    image = crop.to(torch.float32) / 255.0
    for op in row[da.ORDER].tolist():
        if op >= 0:
            image = _REFERENCE_OPS[int(op)](image, float(row[da.FACTORS.start + int(op)]))
    if row[da.GRAYSCALE]:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    if row[da.BLUR]:
        sigma = float(row[da.SIGMA])
        image = F.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    if row[da.SOLARIZE]:
        image = F.solarize(image, threshold / 255.0)
    return F.normalize(image, list(IMAGENET_MEAN), list(IMAGENET_STD))


# -------------------------------------------------------------------------------------------- the device step
@pytest.mark.parametrize("hsv_helpers", [True, False], ids=["torchvision-hsv", "per-sample-hue-fallback"])
def test_device_step_equals_torchvision_per_sample(monkeypatch, hsv_helpers):
    rng = np.random.default_rng(0)
    n = 72  # every permutation applied twice, with the other flags on and off
    params = _hand_set_params(n, rng)
    crops = torch.from_numpy(rng.integers(0, 256, (n, 3, 20, 20), dtype=np.uint8))
    crops[::9] = 90  # grey crops: hue and saturation on a zero-chroma image (not 128: after a blur the rounding
    # decides which side of the solarisation threshold a flat image falls; the threshold is checked on its own)
    if not hsv_helpers:
        monkeypatch.setattr(da, "_rgb_to_hsv", None)
    out = da.DeviceColour(IMAGENET_MEAN, IMAGENET_STD)(crops, params)
    want = torch.stack([_reference(c, p) for c, p in zip(crops, params)])
    assert out.dtype == torch.float32 and out.shape == crops.shape
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(crops, torch.zeros_like(crops))
    with pytest.raises(ValueError, match="uint8 crops"):
        da.DeviceColour(IMAGENET_MEAN, IMAGENET_STD)(crops.float(), params)


def test_every_op_changes_what_it_should():
    """Each flag on its own moves the output away from the plain normalised crop (nothing is silently skipped)."""
    crops = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 3, 16, 16), dtype=np.uint8))
    step = da.DeviceColour(IMAGENET_MEAN, IMAGENET_STD)
    plain = torch.zeros(1, da.N_PARAMS)
    plain[0, da.FACTORS] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    plain[0, da.ORDER] = -1.0
    base = step(crops, plain)
    torch.testing.assert_close(base, F.normalize(crops.float() / 255, list(IMAGENET_MEAN), list(IMAGENET_STD)))
    for index, value in [(da.GRAYSCALE, 1.0), (da.SOLARIZE, 1.0)]:
        params = plain.clone()
        params[0, index] = value
        assert not torch.allclose(step(crops, params), base), index
    solarize = plain.clone()
    solarize[0, da.SOLARIZE] = 1.0
    levels = torch.tensor([127, 128, 200], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 4, 4).contiguous()
    solarized = step(levels, solarize.expand(3, -1))[:, :, 0, 0]  # at and above 128 inverted, below kept
    want = F.normalize(torch.tensor([127, 255 - 128, 255 - 200]).float().div(255).view(3, 1, 1, 1).expand(3, 3, 1, 1),
                       list(IMAGENET_MEAN), list(IMAGENET_STD))[:, :, 0, 0]
    torch.testing.assert_close(solarized, want)
    params = plain.clone()
    params[0, da.BLUR], params[0, da.SIGMA] = 1.0, 1.5
    assert not torch.allclose(step(crops, params), base)
    for op, factor in enumerate((1.3, 0.7, 0.5, 0.2)):
        params = plain.clone()
        params[0, da.JITTER], params[0, da.ORDER.start], params[0, da.FACTORS.start + op] = 1.0, op, factor
        assert not torch.allclose(step(crops, params), base), op


# ----------------------------------------------------------------------------------------------------- the draws
def _draws(n: int, **probabilities) -> torch.Tensor:
    aug = DinoBloomAugmentation(global_size=8, defer_colour=True, **probabilities)
    torch.manual_seed(0)
    return torch.stack([torch.stack([draw() for draw in aug.colour_draws]) for _ in range(n)])  # (n, 2, N_PARAMS)


def test_draw_frequencies_follow_the_probabilities():
    draws = _draws(4000, jitter_p=0.8, grayscale_p=0.2, blur_p=(1.0, 0.1), solarize_p=0.2)
    rates = {"jitter": draws[:, :, da.JITTER].mean(0), "gray": draws[:, :, da.GRAYSCALE].mean(0),
             "blur": draws[:, :, da.BLUR].mean(0), "solarize": draws[:, :, da.SOLARIZE].mean(0)}
    want = {"jitter": (0.8, 0.8), "gray": (0.2, 0.2), "blur": (1.0, 0.1), "solarize": (0.0, 0.2)}
    for name, (crop1, crop2) in want.items():
        assert abs(float(rates[name][0]) - crop1) < 0.04 and abs(float(rates[name][1]) - crop2) < 0.04, name
    applied = draws[draws[:, :, da.JITTER] > 0]
    assert all(sorted(row) == [0, 1, 2, 3] for row in applied[:, da.ORDER].tolist())
    factors = applied[:, da.FACTORS]
    for column, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        assert lo <= float(factors[:, column].min()) < lo + 0.05 and hi - 0.05 < float(factors[:, column].max()) <= hi
    sigmas = draws[draws[:, :, da.BLUR] > 0][:, da.SIGMA]
    assert 0.1 <= float(sigmas.min()) < 0.2 and 1.9 < float(sigmas.max()) <= 2.0
    skipped = draws[draws[:, :, da.JITTER] == 0]
    assert (skipped[:, da.ORDER] == -1).all() and skipped[:, da.FACTORS].tolist()[0] == [1.0, 1.0, 1.0, 0.0]


def test_p0_and_p1_are_exact_and_a_switched_off_factor_never_runs():
    never = _draws(2000, jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=0.0)
    flags = [da.JITTER, da.GRAYSCALE, da.BLUR, da.SOLARIZE]
    assert (never[:, :, flags] == 0).all() and (never[:, :, da.ORDER] == -1).all()
    always = _draws(2000, jitter_p=1.0, grayscale_p=1.0, blur_p=(1.0, 1.0), solarize_p=1.0)
    assert (always[:, :, [da.JITTER, da.GRAYSCALE, da.BLUR]] == 1).all()
    assert (always[:, 1, da.SOLARIZE] == 1).all() and (always[:, 0, da.SOLARIZE] == 0).all()  # crop 2 only
    no_hue = _draws(200, jitter_p=1.0, jitter=(0.4, 0.4, 0.2, 0.0))
    orders = no_hue[:, :, da.ORDER]
    assert ((orders == -1).sum(-1) == 1).all() and not (orders == 3).any()
    assert (no_hue[:, :, da.FACTORS.start + 3] == 0).all()


def test_draws_consume_the_rng_exactly_as_the_cpu_transforms():
    """Geometry, then the colour draws, with torchvision's calls: the global RNG ends where the CPU path's does,
    whatever is applied, so the next crop (and the next image) is cut the same way."""
    image = _image(24)
    cpu = DinoBloomAugmentation(global_size=16, jitter_p=0.5, grayscale_p=0.5, blur_p=(0.5, 0.5), solarize_p=0.5)
    gpu = DinoBloomAugmentation(global_size=16, jitter_p=0.5, grayscale_p=0.5, blur_p=(0.5, 0.5), solarize_p=0.5,
                                defer_colour=True)
    for seed in range(40):
        torch.manual_seed(seed)
        cpu(image)
        after_cpu = torch.get_rng_state()
        torch.manual_seed(seed)
        gpu(image)
        assert torch.equal(torch.get_rng_state(), after_cpu), seed


def test_same_seed_same_crops_and_parameters():
    image = _image(48)

    def run(seed):
        aug = DinoBloomAugmentation(global_size=32, defer_colour=True, generator=torch.Generator().manual_seed(seed))
        return aug(image)

    first, again, other = run(3), run(3), run(4)
    assert list(first) == ["global_crops", "colour_params"]
    assert [c.dtype for c in first["global_crops"]] == [torch.uint8] * 2
    assert [c.shape for c in first["global_crops"]] == [(3, 32, 32)] * 2
    assert [p.shape for p in first["colour_params"]] == [(da.N_PARAMS,)] * 2
    for key in first:
        assert all(torch.equal(a, b) for a, b in zip(first[key], again[key])), key
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])


@pytest.mark.parametrize("seed", range(6))
def test_geometry_equals_the_cpu_path_with_colour_off(seed):
    image = _image(64, seed)
    off = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=0.0)
    cpu = DinoBloomAugmentation(global_size=32, resize_to=48, generator=torch.Generator().manual_seed(seed), **off)
    gpu = DinoBloomAugmentation(global_size=32, resize_to=48, generator=torch.Generator().manual_seed(seed),
                                defer_colour=True, **off)
    want = torch.stack(cpu(image)["global_crops"])
    deferred = gpu(image)
    got = gpu.device_colour()(torch.stack(deferred["global_crops"]), torch.stack(deferred["colour_params"]))
    assert torch.equal(got, want)  # the same pixels, the same float arithmetic


def test_collate_keeps_masks_and_adds_the_parameters_in_crop_order():
    image = _image(40)
    aug = DinoBloomAugmentation(global_size=28, defer_colour=True, generator=torch.Generator().manual_seed(0))
    samples = [aug(image) for _ in range(3)]
    gen = BlockMaskGenerator((2, 2), max_num_patches=2)
    batch = collate_crops(samples, gen, seed=7, dtype=torch.float16)
    assert batch["global_crops"].dtype == torch.uint8 and batch["global_crops"].shape == (6, 3, 28, 28)
    order = [(i, s) for i in range(2) for s in range(3)]  # crop 0 of every image, then crop 1
    assert all(torch.equal(batch["global_crops"][k], samples[s]["global_crops"][i]) for k, (i, s) in enumerate(order))
    assert all(torch.equal(batch["colour_params"][k], samples[s]["colour_params"][i]) for k, (i, s) in enumerate(order))
    plain = [{"global_crops": [c.float() for c in s["global_crops"]]} for s in samples]
    reference = collate_crops(plain, gen, seed=7)
    assert "colour_params" not in reference
    for key in ("masks", "mask_indices", "n_masked", "masks_weight"):
        assert torch.equal(batch[key], reference[key]), key
    assert batch["upperbound"] == reference["upperbound"]


# ----------------------------------------------------------------------------------------------------- the trainer
def test_unknown_augment_on_is_refused():
    with pytest.raises(UsageError, match="augment_on must be one of cpu, gpu, got 'tpu'"):
        get_preset("tiny-cpu").override(["augment_on=tpu"])
    with pytest.raises(UsageError, match="augment_on"):
        TrainConfig(preset="x", augment_on="GPU")
    assert get_preset("tiny-cpu").override(["augment_on=gpu"]).augment_on == "gpu"
    assert get_preset("s").augment_on == "cpu"


def test_trainer_with_augment_on_gpu_runs_resumes_exactly_and_logs_a_changed_setting(tmp_path):
    """On the CPU, with a loader worker: finite losses, uint8 batches with parameters, and a resumed run takes the
    same steps as one that never stopped (the device step draws nothing)."""
    from dinobloom_train.train import Trainer

    images = make_image_folder(tmp_path / "imgs", {"a": 8, "b": 8}, size=40)
    config = get_preset("tiny-cpu").override(SMALL + ["augment_on=gpu", "num_workers=1"])
    straight = Trainer(config, images, tmp_path / "a", log=lambda m: None)
    assert straight.device_colour is not None
    batch = next(straight._batches())
    assert batch["global_crops"].dtype == torch.uint8 and batch["colour_params"].shape == (16, da.N_PARAMS)
    history = straight.train(4)
    assert [r["iteration"] for r in history] == [1, 2, 3, 4]
    assert all(np.isfinite(r[k]) for r in history for k in ("loss", "dino", "ibot", "koleo"))
    Trainer(config, images, tmp_path / "b", log=lambda m: None).train(2)
    resumed = Trainer(config, images, tmp_path / "b", log=lambda m: None)
    assert resumed.iteration == 2
    assert [r["loss"] for r in resumed.train(4)[2:]] == [r["loss"] for r in history[2:]]
    assert torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)["config"]["augment_on"] == "gpu"
    messages = []
    back = Trainer(config.override(["augment_on=cpu"]), images, tmp_path / "b", log=messages.append)
    assert back.device_colour is None and back.iteration == 4
    assert any("augment_on 'gpu' -> 'cpu'" in m for m in messages), messages
