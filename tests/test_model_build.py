"""Building a model from a weight file on the meta device (no random initialisation): the same model as the
initialise-then-copy path, in the module's dtypes, and the initialising path wherever the file cannot provide
every tensor."""

import pytest
import torch
from torch import nn

from extractors import get_extractor
from extractors.base import ExtractorEntry, FeatureModel, call_backbone
from tests.test_pretrained import _images, write_format


def _all_tensors(model):
    return dict(model.named_parameters()) | dict(model.named_buffers())


def _same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


@pytest.mark.parametrize("name,fmt", [("dinobloom-s", "dinobloom_s"), ("resnet50-trunc", "resnet50_torchvision")])
def test_meta_build_equals_the_initialising_build(tmp_path, name, fmt):
    path = tmp_path / "weights.pth"
    write_format(fmt, path)
    entry = get_extractor(name)
    assert entry.meta_init
    fast, slow = entry.build(path), entry.replace(meta_init=False).build(path)
    assert not any(t.is_meta for t in _all_tensors(fast).values())
    assert all(p.requires_grad for p in fast.parameters()) and not fast.training
    _same_model(fast, slow)
    x = _images(2)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), slow(x), rtol=0, atol=0)


def test_a_half_precision_file_becomes_the_modules_float32(tmp_path):
    path = tmp_path / "DinoBloom-S.pth"
    state = write_format("dinobloom_s", path)
    half = {"teacher": {k: v.half() for k, v in state["teacher"].items()}}
    torch.save(half, path)
    fast = get_extractor("dinobloom-s").build(path)
    assert {t.dtype for t in fast.state_dict().values()} == {torch.float32}
    _same_model(fast, get_extractor("dinobloom-s").replace(meta_init=False).build(path))


def test_rewriting_the_file_after_the_build_leaves_the_model_alone(tmp_path):
    """The file is read, not mapped: a training script saving over it mid-run must not change the weights."""
    path = tmp_path / "resnet.pth"
    state = write_format("resnet50_torchvision", path)
    model = get_extractor("resnet50-trunc").build(path)
    torch.save({k: torch.full_like(v, 7) for k, v in state.items()}, path)
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"], rtol=0, atol=0)


class _WithDerivedBuffer(nn.Module):
    """Holds a non-persistent buffer computed at construction (as timm's Swin holds relative_position_index):
    no weight file carries it, so the model cannot be built on the meta device."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("offsets", torch.arange(3.0), persistent=False)

    def forward(self, x):
        return self.linear(x.flatten(1)[:, :4]) + self.offsets


def test_a_non_persistent_buffer_sends_the_build_down_the_initialising_path(tmp_path):
    entry = ExtractorEntry(name="derived", family="test", architecture="test", dim=3, pooling="model",
                           build_fn=lambda entry: FeatureModel(_WithDerivedBuffer(), call_backbone), meta_init=True)
    path = tmp_path / "w.pth"
    torch.save(_WithDerivedBuffer().state_dict(), path)
    model = entry.build(path)
    assert not any(t.is_meta for t in _all_tensors(model).values())
    torch.testing.assert_close(model.backbone.offsets, torch.arange(3.0))


def test_weight_file_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import hashlib

    import bench.core.files as files

    path, index = tmp_path / "w.pth", tmp_path / "index.json"
    path.write_bytes(b"a" * 1000)
    calls = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda p: calls.append(p) or real(p))
    first = files.sha256_file_remembered(path, index)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest() and len(calls) == 1
    assert files.sha256_file_remembered(path, index) == first and len(calls) == 1  # remembered
    path.write_bytes(b"b" * 1000)  # same size; a write changes the ctime
    assert files.sha256_file_remembered(path, index) == hashlib.sha256(b"b" * 1000).hexdigest() and len(calls) == 2
    index.write_text("{not json")
    assert files.sha256_file_remembered(path, index) == hashlib.sha256(b"b" * 1000).hexdigest() and len(calls) == 3
    assert len(__import__("json").loads(index.read_text())) == 1  # one line per file, the older ones dropped
