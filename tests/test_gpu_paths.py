"""The CUDA paths of extraction and training against their CPU counterparts: run with `python -m pytest -m gpu`
on a machine with a GPU (deselected by default, skipped where CUDA is absent)."""

import numpy as np
import pytest
import torch

from bench.runner import RunOptions, load_pair
from tests.conftest import TINY

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_extraction_with_overlapped_copies_equals_the_cpu(image_folder, device):
    task = f"imagefolder:{image_folder}"
    cpu = load_pair(TINY, task, RunOptions(progress=False, device="cpu", batch_size=5), log=print)
    gpu = load_pair(TINY, task, RunOptions(progress=False, device=device, precision="fp32", batch_size=5), log=print)
    assert gpu.extractor.fingerprint["precision_rule"] == 2 and gpu.stats.precision == "fp32"
    np.testing.assert_allclose(gpu.features, cpu.features, rtol=1e-4, atol=1e-5)


def test_cuda_bf16_extraction_is_close_to_fp32(image_folder):
    task = f"imagefolder:{image_folder}"
    fp32 = load_pair(TINY, task, RunOptions(progress=False, device="cuda", precision="fp32"), log=print)
    auto = load_pair(TINY, task, RunOptions(progress=False, device="cuda"), log=print)
    assert auto.stats.precision in ("bf16", "fp32")  # fp32 on a GPU without native bf16
    scale = np.abs(fp32.features).max()
    assert np.abs(auto.features - fp32.features).max() < 0.05 * scale


def test_device_colour_on_cuda_equals_the_cpu():
    from dinobloom_train.data import DinoBloomAugmentation

    colour = DinoBloomAugmentation(global_size=32, defer_colour=True).device_colour()
    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    params = torch.zeros(16, 13)
    params[:, 0], params[:, 1:5] = 1.0, torch.tensor([1.2, 0.8, 1.1, 0.05])
    params[:, 5:9] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    params[::2, 10], params[::2, 11] = 1.0, 1.5
    params[1::4, 12] = 1.0
    torch.testing.assert_close(colour(crops.cuda(), params).cpu(), colour(crops, params), rtol=1e-4, atol=1e-4)
