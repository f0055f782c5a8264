"""--precision (resolution, autocast, fingerprint), the CUDA batch default, out-of-memory splitting and the
overlapped device-to-host hand-over of the extraction loop, all exercised on the CPU."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cache import FeatureStore
from bench.core.errors import ExtractorError, UsageError
from bench.extract import ImageFiles, _Forward, default_batch_size, extract_to_store
from bench.precision import forward_precision, resolve_precision
from bench.runner import RunOptions, build_extractor, load_pair, resolve_entry
from tests.conftest import TINY

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    "requested,device,preferred,expected",
    [
        ("auto", CPU, "auto", "fp32"),
        ("auto", CUDA, "auto", "bf16"),
        ("tf32", CPU, "auto", "fp32"),  # TF32 is an NVIDIA format: on a CPU the features are fp32's
        ("tf32", CUDA, "auto", "tf32"),
        ("bf16", CPU, "auto", "bf16"),  # asked for by name: honoured, slow or not
        ("fp32", CUDA, "auto", "fp32"),
        ("auto", CUDA, "fp16", "fp16"),  # a plugin's declared precision is what auto means for it
        ("fp32", CUDA, "fp16", "fp32"),  # the flag wins over the declaration
    ],
)
def test_resolve_precision(requested, device, preferred, expected, monkeypatch):
    monkeypatch.setattr("bench.precision.native_bf16", lambda device: True)  # an A100/H100 (none here)
    assert resolve_precision(requested, device, preferred) == expected


def test_auto_stays_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    monkeypatch.setattr("bench.precision.native_bf16", lambda device: False)  # a V100 or T4
    assert resolve_precision("auto", CUDA) == "fp32" and resolve_precision("bf16", CUDA) == "bf16"


def test_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(UsageError, match="--precision must be one of auto, fp32, tf32, bf16, fp16"):
        RunOptions(precision="fp8")
    with pytest.raises(UsageError, match="not resolved"):
        with forward_precision("auto", CPU):
            pass


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                             ("fp16", torch.float16)])
def test_forward_precision_sets_the_matmul_dtype_on_cpu(precision, dtype):
    layer = torch.nn.Linear(8, 4)
    with torch.inference_mode(), forward_precision(precision, CPU):
        assert layer(torch.randn(2, 8)).dtype == dtype


def test_bf16_features_differ_from_fp32_and_have_their_own_cache_key(image_folder):
    """The precision is part of the features' identity: a bf16 run neither reads nor overwrites fp32 features."""
    fp32 = load_pair(TINY, f"imagefolder:{image_folder}", RunOptions(progress=False), log=print)
    bf16 = load_pair(TINY, f"imagefolder:{image_folder}", RunOptions(progress=False, precision="bf16"), log=print)
    assert fp32.extractor.fingerprint["precision"] == "fp32" and bf16.extractor.fingerprint["precision"] == "bf16"
    # CPU fp32 keys are those of older versions; what bf16 means changed (it used to run fp32 on a CPU)
    assert "precision_rule" not in fp32.extractor.fingerprint and bf16.extractor.fingerprint["precision_rule"] == 2
    assert fp32.cached.manifest["key"] != bf16.cached.manifest["key"]
    assert bf16.stats.precision == "bf16" and bf16.cached.manifest["extraction"]["precision"] == "bf16"
    again = load_pair(TINY, f"imagefolder:{image_folder}", RunOptions(progress=False, precision="bf16"), log=print)
    assert again.stats.cached and again.stats.precision == "bf16"  # recorded on a cache hit too
    a, b = fp32.features, bf16.features
    assert not np.array_equal(a, b)
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()  # bf16 rounding, not another model


def test_run_records_the_resolved_precision(image_folder, tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.core.record import ResultRecord

    results = tmp_path / "results"
    done = CliRunner().invoke(app, ["run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1",
                                    "--precision", "bf16", "--results", str(results), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = ResultRecord.read(next(results.rglob("knn-1.json")))
    assert record.extractor.fingerprint["precision"] == "bf16"
    assert record.timings["precision"] == "bf16"


def test_check_extractor_runs_in_the_requested_precision():
    from typer.testing import CliRunner

    from bench.cli import app

    done = CliRunner().invoke(app, ["check-extractor", TINY, "--precision", "bf16"])
    assert done.exit_code == 0, done.output
    assert "in bf16 on cpu" in done.output and "bf16 allows" in done.output


def test_default_batch_size():
    assert default_batch_size(CUDA) == 256 and default_batch_size(CPU) == 32
    entry = build_extractor(resolve_entry(TINY), RunOptions(), log=print).entry
    assert entry.precision == "fp32"


class _SmallMemory(torch.nn.Module):
    """Raises CUDA's out-of-memory error on batches above ``limit`` images."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.sizes = limit, []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.flatten(1)[:, :3] * 2


def test_out_of_memory_halves_the_forward_batch_and_keeps_it():
    model, said = _SmallMemory(limit=3), []
    forward = _Forward(model, 16, said.append)
    x = torch.arange(16 * 12, dtype=torch.float32).reshape(16, 3, 2, 2)
    np.testing.assert_array_equal(forward(x).numpy(), x.flatten(1)[:, :3].numpy() * 2)
    assert forward.size == 2 and len(said) == 3 and "--batch-size 2" in said[-1]
    model.sizes.clear()
    forward(x[:5])
    assert model.sizes == [2, 2, 1]  # the smaller size stays
    with pytest.raises(ExtractorError, match="single image"):
        _Forward(_SmallMemory(limit=0), 4, said.append)(x[:4])


@pytest.mark.parametrize("overlap", [False, True])
def test_overlapped_hand_over_gives_the_same_features(image_folder, tmp_path, overlap):
    """The CUDA loop finishes batch i while batch i+1 is computed; the rows, shards and values must not change."""
    entry = build_extractor(resolve_entry(TINY), RunOptions(), log=print).entry
    model = entry.build()
    paths = sorted(image_folder.rglob("*.png"))
    reference = torch.cat([model(torch.stack([entry.transform()(Image.open(p).convert("RGB"))
                                                for p in paths[i:i + 5]])) for i in range(0, len(paths), 5)])
    store = FeatureStore(tmp_path / "cache", f"k{int(overlap)}")
    extract_to_store(model, store, ImageFiles(paths, entry.transform(), entry.input_size, False), dim=entry.dim,
                     batch_size=5, num_workers=0, device=CPU, precision="fp32", shard_size=10, manifest={},
                     progress=False, description="t", overlap=overlap)
    features = np.asarray(store.load().features)
    assert features.shape == (36, 32)
    np.testing.assert_allclose(features, reference.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("enabled", [False, True])
def test_tf32_switch_is_restored_and_leaves_the_legacy_flags_readable(enabled):
    """Libraries read ``cudnn.allow_tf32`` (``cudnn.flags()`` does): after torch's newer ``fp32_precision`` API
    has set "ieee" that read raises, so the switch must use the flags it restores."""
    from bench.precision import _tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with _tf32(enabled):
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (enabled, enabled)
        with torch.backends.cudnn.flags(enabled=True):
            pass
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_a_result_in_another_precision_is_recomputed_and_says_why(image_folder, tmp_path):
    from bench.core.record import ResultRecord
    from bench.runner import run_pair

    results, said = tmp_path / "results", []
    task = f"imagefolder:{image_folder}"
    for precision in ("fp32", "bf16"):
        options = RunOptions(progress=False, precision=precision, results_dir=results)
        assert run_pair(TINY, task, ["knn-1"], options, log=said.append).status == "ok"
    assert any("computed in fp32 and this run computes in bf16" in line for line in said), said
    assert ResultRecord.read(next(results.rglob("knn-1.json"))).extractor.fingerprint["precision"] == "bf16"
    assert next(results.rglob("knn-1.json.stale"))


def test_the_board_shows_each_results_precision(image_folder, tmp_path):
    from bench.runner import run_pair
    from leaderboard.tables import read_results, render

    results = tmp_path / "results"
    options = RunOptions(progress=False, precision="bf16", results_dir=results)
    assert run_pair(TINY, f"imagefolder:{image_folder}", ["knn-1"], options, log=print).status == "ok"
    table = read_results(results)
    assert table["precision"].tolist() == ["bf16"]
    assert "<td class=\"txt\" data-value=\"bf16\">bf16</td>" in render(table, "html", n_boot=0)
