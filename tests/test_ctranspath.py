"""CTransPath: ConvStem Swin-T loaded from checkpoints in the published format (random values, real key names/shapes).

Weights cannot be downloaded here, so the tests write ``{"model": {...}}`` files with exactly the key names and
shapes of the published ``ctranspath.pth`` (``tests/data/checkpoint_keys.json``) and check the loaded model
against a reference built and loaded independently (explicit key mapping written below, not the module's unwrap).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from extractors import get_extractor
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, MissingWeightsError
from extractors.ctranspath import ConvStem
from extractors.weights import WeightsError
from tests.conftest import KEYS_FILE

# built-ins through the registry, which names them (their module objects carry no name)
CTRANSPATH = get_extractor("ctranspath")
BUFFERS = ("attn_mask", "relative_position_index")


def published_shapes() -> dict[str, list[int]]:
    """key -> shape of the published ctranspath.pth state dict."""
    return json.loads(KEYS_FILE.read_text())["ctranspath"]["model"]


def random_published_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the published names and shapes (buffers get deliberately wrong values)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in published_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 10_000, (), generator=gen)), dtype=torch.int64)
        elif key.endswith("relative_position_index"):
            state[key] = torch.randint(0, 169, shape, generator=gen, dtype=torch.int64)  # wrong on purpose
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("attn_mask"):
            state[key] = torch.randn(shape, generator=gen)  # wrong on purpose: must be rebuilt, not loaded
        elif re.search(r"norm\d?\.weight$|proj\.[14]\.weight$", key):  # LayerNorm / BatchNorm scales near 1
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=gen)
    return state


def light_published_state() -> dict[str, torch.Tensor]:
    """The published names and shapes with constant values stored once each (stride-0 views, a tiny file): for
    the tests whose outcome depends on names and shapes only."""
    state = {}
    for key, shape in published_shapes().items():
        if key.endswith(("num_batches_tracked", "relative_position_index")):
            state[key] = torch.zeros((), dtype=torch.int64).expand(shape)
        else:
            state[key] = torch.full((), 0.5 if key.endswith("running_var") else 0.01).expand(shape)
    return state


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model": state}, path)
    return path


def reference_backbone(state: dict[str, torch.Tensor]):
    """timm Swin-T + ConvStem loaded by an explicit mapping from the timm 0.5.4 names (independent of unwrap)."""
    import timm

    model = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=0, embed_layer=ConvStem
    ).eval()
    mapped = {}
    for key, value in state.items():
        if key.endswith(BUFFERS):
            continue  # non-persistent in timm 1.x, computed by the model
        # timm 0.5.4: PatchMerging at the end of stages 0-2; timm 1.x: at the start of stages 1-3
        match = re.fullmatch(r"layers\.(\d)\.downsample\.(.+)", key)
        if match:
            key = f"layers.{int(match.group(1)) + 1}.downsample.{match.group(2)}"
        mapped[key] = value
    model.load_state_dict(mapped, strict=True)
    return model


def reference_features(model, images: torch.Tensor) -> torch.Tensor:
    x = model.patch_embed(images)
    x = model.layers(x)
    x = model.norm(x)  # (N, 7, 7, 768) normed tokens
    return x.reshape(x.shape[0], -1, x.shape[-1]).mean(dim=1)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    state = random_published_state()
    path = save_checkpoint(tmp_path_factory.mktemp("ctranspath") / "ctranspath.pth", state)
    return state, path


@pytest.fixture(scope="module")
def loaded(published):
    return CTRANSPATH.build(weights=published[1])


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def features(loaded, images):
    with torch.no_grad():
        return loaded(images)


def test_entry_metadata():
    assert (CTRANSPATH.name, CTRANSPATH.family, CTRANSPATH.dim) == ("ctranspath", "ctranspath", 768)
    assert CTRANSPATH.architecture == "timm:swin_tiny_patch4_window7_224+convstem"
    assert (CTRANSPATH.input_size, CTRANSPATH.interpolation, CTRANSPATH.pooling) == (224, "bilinear", "mean")
    assert CTRANSPATH.mean == IMAGENET_MEAN and CTRANSPATH.std == IMAGENET_STD
    assert CTRANSPATH.needs_weights and CTRANSPATH.weights[0].kind == "file"
    assert "TransPath" in CTRANSPATH.weights[0].location
    with pytest.raises(MissingWeightsError, match="ctranspath"):
        CTRANSPATH.build()


def test_features_equal_independent_reference(published, loaded, images, features):
    state, _ = published
    reference = reference_backbone(state)
    with torch.no_grad():
        want = reference_features(reference, images)
    assert features.shape == (2, 768) and features.dtype == torch.float32
    torch.testing.assert_close(features, want, rtol=0, atol=1e-6)
    with torch.no_grad():  # same as timm's own headless forward (global average pool of the normed tokens)
        torch.testing.assert_close(loaded.backbone(images), features, rtol=0, atol=1e-6)
    # every loaded tensor is the file's (after renaming), nothing left at its random init
    ref_state = reference.state_dict()
    for key, value in loaded.backbone.state_dict().items():
        assert torch.equal(value, ref_state[key]), key


def test_convstem_is_the_published_stem(published, loaded, images):
    """patch_embed == conv3x3/2 -> BN -> ReLU -> conv3x3/2 -> BN -> ReLU -> conv1x1 -> LayerNorm, from raw tensors."""
    state, _ = published
    s = {k[len("patch_embed."):]: v for k, v in state.items() if k.startswith("patch_embed.")}

    def bn(x, i):
        return F.batch_norm(
            x, s[f"proj.{i}.running_mean"], s[f"proj.{i}.running_var"], s[f"proj.{i}.weight"], s[f"proj.{i}.bias"],
            training=False, eps=1e-5,
        )

    x = images[:2]
    x = F.relu(bn(F.conv2d(x, s["proj.0.weight"], stride=2, padding=1), 1))
    x = F.relu(bn(F.conv2d(x, s["proj.3.weight"], stride=2, padding=1), 4))
    x = F.conv2d(x, s["proj.6.weight"], s["proj.6.bias"])  # (N, 96, 56, 56)
    want = F.layer_norm(x.permute(0, 2, 3, 1), (96,), s["norm.weight"], s["norm.bias"], eps=1e-5)
    with torch.no_grad():
        got = loaded.backbone.patch_embed(images[:2])
    assert got.shape == (2, 56, 56, 96)  # NHWC, as timm 1.x Swin stages expect
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_buffers_rebuilt_not_loaded(published, loaded):
    state, _ = published
    fresh = CTRANSPATH.build_fn(CTRANSPATH).backbone
    fresh_buffers = dict(fresh.named_buffers())
    own = dict(loaded.backbone.named_buffers())
    checked = 0
    for key in state:
        if key.endswith(BUFFERS):
            assert torch.equal(own[key], fresh_buffers[key]), key
            assert not torch.equal(own[key].to(state[key].dtype), state[key]), key
            checked += 1
    assert checked == 17  # 12 relative_position_index + 5 attn_mask in the published file


def test_batch_size_invariance(loaded, images, features):
    with torch.no_grad():
        single = loaded(images[1:2])
    assert single.shape == (1, 768)
    torch.testing.assert_close(single, features[1:2], rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "cls+mean"])
def test_cls_pooling_is_refused(tmp_path, pooling):
    with pytest.raises(ValueError, match="no CLS token"):  # refused when building, before any file is read
        CTRANSPATH.replace(pooling=pooling).build(weights=tmp_path / "ctranspath.pth")


def test_head_keys_are_dropped(tmp_path):
    state = {**light_published_state(), "head.weight": torch.ones(2, 768), "head.bias": torch.ones(2)}
    model = CTRANSPATH.build(weights=save_checkpoint(tmp_path / "with_head.pth", state))
    assert torch.equal(model.backbone.norm.weight, torch.full((768,), 0.01))
    assert model.backbone.layers[1].downsample.reduction.weight.shape == (192, 384)


def _load_error(tmp_path, state) -> str:
    with pytest.raises(WeightsError) as info:
        CTRANSPATH.build(weights=save_checkpoint(tmp_path / "bad.pth", state))
    return str(info.value)


def test_missing_key_is_listed(tmp_path):
    state = light_published_state()
    del state["layers.2.blocks.3.mlp.fc2.bias"], state["patch_embed.proj.4.running_var"]
    message = _load_error(tmp_path, state)
    assert "2 missing keys" in message and "unexpected" not in message
    assert "layers.2.blocks.3.mlp.fc2.bias" in message and "patch_embed.proj.4.running_var" in message


def test_missing_first_downsample_key_names_it(tmp_path):
    """The old layout is still recognised without layers.0.downsample.reduction.weight (timm's filter's only cue)."""
    state = light_published_state()
    del state["layers.0.downsample.reduction.weight"]
    message = _load_error(tmp_path, state)
    assert "1 missing keys: layers.1.downsample.reduction.weight" in message  # installed-timm name
    assert "unexpected" not in message and "shape" not in message


def test_unexpected_keys_are_listed(tmp_path):
    state = light_published_state()
    state["layers.1.blocks.1.attn.extra.weight"] = torch.zeros(3)
    state["layers.3.blocks.7.attn_mask"] = torch.zeros(1, 49, 49)  # not a buffer of this model: not dropped
    message = _load_error(tmp_path, state)
    assert "2 unexpected keys" in message and "missing" not in message
    assert "layers.1.blocks.1.attn.extra.weight" in message and "layers.3.blocks.7.attn_mask" in message


def test_wrong_shape_bias_table_is_not_resampled(tmp_path):
    state = light_published_state()
    state["layers.1.blocks.0.attn.relative_position_bias_table"] = torch.zeros(225, 6)  # a window-8 table
    message = _load_error(tmp_path, state)
    assert "shape mismatches" in message and "layers.1.blocks.0.attn.relative_position_bias_table" in message


def test_plain_swin_patch_embed_is_reported(tmp_path):
    """A stock Swin-T file (4x4 patchify conv) is refused with the key names, not an AttributeError."""
    state = {k: v for k, v in light_published_state().items() if not k.startswith("patch_embed.proj.")}
    state["patch_embed.proj.weight"], state["patch_embed.proj.bias"] = torch.zeros(96, 3, 4, 4), torch.zeros(96)
    message = _load_error(tmp_path, state)
    assert "unexpected keys: patch_embed.proj.bias, patch_embed.proj.weight" in message
    assert "patch_embed.proj.0.weight" in message


def test_file_without_model_key(tmp_path):
    path = tmp_path / "not_ctranspath.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": torch.tensor(3)}, path)
    with pytest.raises(WeightsError) as info:
        CTRANSPATH.build(weights=path)
    message = str(info.value)
    assert str(path) in message and "'model'" in message and "state_dict" in message and "epoch" in message


def test_truncated_file(tmp_path):
    path = tmp_path / "ctranspath.pth"
    torch.save({"model": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(WeightsError, match="truncated"):
        CTRANSPATH.build(weights=path)
