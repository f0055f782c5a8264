"""Extractor entries: seeded builds, strict weight loading with clear errors, plugin doors."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from extractors import get_extractor
from extractors.base import ExtractorEntry, FeatureModel, MissingWeightsError, call_backbone
from extractors.weights import WeightsError


def _batch(entry, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, entry.input_size, entry.input_size, generator=g)


def test_random_entries_are_seeded_and_fingerprinted():
    entry = get_extractor("vit-s14-random")
    a, b = entry.build(), entry.build()
    x = _batch(entry)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
    assert entry.fingerprint(a)["state_sha256"] == entry.fingerprint(b)["state_sha256"]
    other = entry.replace(seed=1).build()
    assert entry.fingerprint(other)["state_sha256"] != entry.fingerprint(a)["state_sha256"]


def test_vit_cls_is_the_normed_first_token():
    entry = get_extractor("vit-s14-random")
    model = entry.build()
    x = _batch(entry, n=2)
    with torch.inference_mode():
        tokens = model.backbone.forward_features(x)
        torch.testing.assert_close(model(x), tokens[:, 0])
        mean_model = entry.replace(pooling="mean").build()
        torch.testing.assert_close(mean_model(x), mean_model.backbone.forward_features(x)[:, 1:].mean(1))
        patches = model.patch_tokens(x)
        assert patches.shape == (2, 16 * 16, 384)
        torch.testing.assert_close(patches, tokens[:, 1:])
    with pytest.raises(ValueError, match="no patch tokens"):
        get_extractor("color-histogram").build().patch_tokens(x)


def test_resnet_trunc_is_layer3_average_pool():
    from torchvision.models import resnet50

    entry = get_extractor("resnet50-trunc-random")
    model = entry.build()
    reference = resnet50()
    reference.load_state_dict(model.backbone.state_dict())
    reference.eval()
    x = _batch(entry, n=2)
    with torch.inference_mode():
        r = reference
        feats = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
        torch.testing.assert_close(model(x), feats.mean(dim=(2, 3)))


def test_color_histogram_hand_case():
    entry = get_extractor("color-histogram")
    model = entry.build()
    white = torch.ones(1, 3, 4, 4)
    x = (white - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)
    features = model(x)
    expected = torch.zeros(1, 96)
    expected[0, [31, 63, 95]] = 1.0  # every pixel in the top bin of each channel
    torch.testing.assert_close(features, expected)


def test_color_histogram_equals_numpys_histogram_per_image_and_channel():
    entry = get_extractor("color-histogram")
    model = entry.build()
    pixels = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    pixels[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 31 / 32])  # the edges: the first bin, the last one (closed)
    x = (pixels - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)
    before = x.clone()
    features = model(x).numpy()
    assert torch.equal(x, before)  # the input batch is not changed
    # the same pixels as the model sees them after undoing the normalisation (float32 rounding included)
    seen = (x * torch.tensor(entry.std).view(1, 3, 1, 1) + torch.tensor(entry.mean).view(1, 3, 1, 1)).clamp(0, 1)
    expected = np.stack([np.concatenate([np.histogram(seen[i, c].numpy(), bins=32, range=(0, 1))[0] / (20 * 24)
                                         for c in range(3)]) for i in range(3)])
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-7)


def test_weights_file_loads_strictly_and_gives_the_same_features(tmp_path):
    entry = get_extractor("vit-s14-random")
    donor = entry.replace(seed=123).build()
    path = tmp_path / "vit_s14.safetensors"
    save_file({k: v.contiguous() for k, v in donor.backbone.state_dict().items()}, str(path))
    loaded = entry.build(weights=path)
    x = _batch(entry)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), donor(x), rtol=0, atol=0)
    fingerprint = entry.fingerprint(loaded, path)
    assert fingerprint["weights"]["kind"] == "file" and len(fingerprint["weights"]["sha256"]) == 64
    # a pickled {"state_dict": ...} container loads the same way (weights_only=True)
    torch.save({"state_dict": donor.backbone.state_dict()}, tmp_path / "vit.pth")
    with torch.inference_mode():
        torch.testing.assert_close(entry.build(weights=tmp_path / "vit.pth")(x), donor(x), rtol=0, atol=0)


def test_key_mismatch_lists_keys(tmp_path):
    entry = get_extractor("vit-s14-random")
    state = entry.build().backbone.state_dict()
    state.pop("cls_token")
    state["head.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        entry.build(weights=tmp_path / "bad.pth")
    message = str(info.value)
    assert "1 missing keys: cls_token" in message and "1 unexpected keys: head.extra" in message
    assert str(tmp_path / "bad.pth") in message and "\n" not in message  # one line, as the CLI prints errors


def test_truncated_and_missing_files(tmp_path):
    entry = get_extractor("vit-s14-random")
    torch.save(entry.build().backbone.state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        entry.build(weights=tmp_path / "cut.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(WeightsError, match="truncated"):
        entry.build(weights=tmp_path / "cut.safetensors")
    with pytest.raises(WeightsError, match="does not exist"):
        entry.build(weights=tmp_path / "absent.pth")


def test_entry_that_needs_weights_says_where_to_get_them():
    from extractors.base import WeightSource

    entry = ExtractorEntry(
        name="needs-file", family="test", architecture="linear", dim=3,
        build_fn=lambda e: FeatureModel(torch.nn.Flatten(), call_backbone),
        weights=(WeightSource("url", "https://example.org/w.pth", sha256="0" * 64),),
    )
    with pytest.raises(MissingWeightsError, match="https://example.org/w.pth.*--weights PATH"):
        entry.build()


def test_entry_validation_names_the_field():
    with pytest.raises(ValueError, match="pooling 'max'"):
        ExtractorEntry(name="x", family="t", architecture="a", dim=4, build_fn=lambda e: None, pooling="max")


def test_plugin_file_with_an_entry_object(tmp_path):
    plugin = tmp_path / "my_extractor.py"
    plugin.write_text(
        "import torch\n"
        "from extractors.base import ExtractorEntry, FeatureModel, call_backbone\n"
        "ENTRY = ExtractorEntry(name='mine', family='user', architecture='avgpool', dim=3, input_size=32,\n"
        "                       build_fn=lambda e: FeatureModel(torch.nn.AdaptiveAvgPool2d(1), call_backbone))\n"
    )
    entry = get_extractor(f"{plugin}:ENTRY")
    assert entry.name == "mine" and entry.dim == 3  # its own name, whichever path reaches the file
    out = entry.build()(torch.ones(2, 3, 32, 32))
    np.testing.assert_allclose(out.numpy(), np.ones((2, 3)))


def test_the_docs_plugin_example_works(tmp_path):
    """docs/extractors.md's 'add your own extractor' example, run as written."""
    import re

    from typer.testing import CliRunner

    from bench.cli import app
    from tests.conftest import REPO

    text = (REPO / "docs" / "extractors.md").read_text()
    code = re.search(r"```python\n# my_extractor.py\n(.*?)```", text, re.S).group(1)
    (tmp_path / "my_extractor.py").write_text(code)
    result = CliRunner().invoke(app, ["check-extractor", f"{tmp_path / 'my_extractor.py'}:SmallViT"])
    assert result.exit_code == 0, result.output
    assert "dim 192" in result.output
