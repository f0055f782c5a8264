"""Phikon (published transformers-4 file format), the hf: door and the openclip: door, on locally built models."""

import json

import pytest
import torch
from torch import nn

from extractors import get_extractor
from extractors.weights import WeightsError, load_strict
from tests.conftest import KEYS_FILE

# built-ins through the registry, which names them (their module objects carry no name)
PHIKON = get_extractor("phikon")


def _images(n, size, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- Phikon --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phikon_files(tmp_path_factory):
    """A random checkpoint in the exact published format (key names and shapes of owkin/phikon's transformers-4
    ViTModel file, pooler included), as model.safetensors in a transformers model folder and as a .bin pickle."""
    shapes = json.loads(KEYS_FILE.read_text())["phikon_transformers4_vitmodel"]
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        value = torch.randn(*shape, generator=g) * 0.02
        if "layernorm" in key and key.endswith(".weight"):
            value += 1.0
        state[key] = value
    from safetensors.torch import save_file

    from extractors.phikon import vit_config

    folder = tmp_path_factory.mktemp("phikon")
    vit_config().save_pretrained(folder)  # config.json, so transformers itself can load the folder
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    torch.save(state, folder / "pytorch_model_v4.bin")
    return {
        "state": state,
        "folder": folder,
        "safetensors": folder / "model.safetensors",
        "bin": folder / "pytorch_model_v4.bin",
    }


@pytest.fixture(scope="module")
def phikon_reference(phikon_files):
    """The same tensors loaded by transformers' own loading of the folder (its v4 -> installed conversion)."""
    from transformers import ViTModel

    model = ViTModel.from_pretrained(phikon_files["folder"], add_pooling_layer=False).eval()
    assert model.config.layer_norm_eps == 1e-6
    with torch.inference_mode():
        return model(pixel_values=_images(3, 224)).last_hidden_state[:, 0]


@pytest.fixture(scope="module")
def phikon_model(phikon_files):
    return PHIKON.build(weights=phikon_files["bin"])


def test_phikon_entry_metadata():
    assert (PHIKON.dim, PHIKON.input_size, PHIKON.pooling, PHIKON.interpolation) == (768, 224, "cls", "bilinear")
    assert PHIKON.mean == (0.485, 0.456, 0.406) and PHIKON.std == (0.229, 0.224, 0.225)
    assert PHIKON.needs_weights and PHIKON.weights[0].location == "owkin/phikon"


def test_phikon_bin_matches_transformers_loading(phikon_files, phikon_reference, phikon_model):
    backbone = phikon_model.backbone
    assert backbone.config.layer_norm_eps == 1e-6 and backbone.config.qkv_bias
    assert backbone.pooler is None
    # a tensor landed where the published name says, whatever the installed transformers calls it
    own = backbone.state_dict()
    query = own.get("encoder.layer.3.attention.attention.query.weight", own.get("layers.3.attention.q_proj.weight"))
    assert torch.equal(query, phikon_files["state"]["encoder.layer.3.attention.attention.query.weight"])
    with torch.inference_mode():
        features = phikon_model(_images(3, 224))
    assert features.shape == (3, 768)
    torch.testing.assert_close(features, phikon_reference, rtol=0, atol=1e-6)


def test_phikon_safetensors_and_batch_invariance(phikon_files, phikon_model):
    model = PHIKON.build(weights=phikon_files["safetensors"])
    assert PHIKON.fingerprint(model)["state_sha256"] == PHIKON.fingerprint(phikon_model)["state_sha256"]
    x = _images(3, 224)
    with torch.inference_mode():
        batch = model(x)
        single = model(x[1:2])
    torch.testing.assert_close(single[0], batch[1], rtol=0, atol=1e-5)


def test_phikon_accepts_installed_names_and_vit_prefix(phikon_files, phikon_model):
    backbone = phikon_model.backbone
    own = {k: v.clone() for k, v in backbone.state_dict().items()}
    for container in (
        own,  # the installed transformers' own names
        {"state_dict": {**{f"vit.{k}": v for k, v in phikon_files["state"].items()},
                        "classifier.weight": torch.zeros(2, 768), "classifier.bias": torch.zeros(2)}},
    ):
        state = PHIKON.unwrap_state_dict(container, "file.bin", backbone)
        load_strict(backbone, state, "file.bin")
    assert torch.equal(backbone.state_dict()["layernorm.weight"], phikon_files["state"]["layernorm.weight"])


def test_phikon_missing_and_unexpected_keys_are_listed(phikon_files, phikon_model):
    state = dict(phikon_files["state"])
    del state["encoder.layer.5.layernorm_after.bias"]
    state["encoder.layer.5.mystery.weight"] = torch.zeros(3)
    state["mask_token"] = torch.zeros(1, 1, 768)
    mapped = PHIKON.unwrap_state_dict(state, "broken.bin", phikon_model.backbone)
    with pytest.raises(WeightsError) as info:
        load_strict(phikon_model.backbone, mapped, "broken.bin")
    message = str(info.value)
    assert "1 missing keys" in message and "layernorm_after.bias" in message and ".5." in message
    assert "2 unexpected keys" in message and "encoder.layer.5.mystery.weight" in message and "mask_token" in message
    with pytest.raises(WeightsError, match="shape mismatches"):
        bad = dict(phikon_files["state"], **{"embeddings.position_embeddings": torch.zeros(1, 257, 768)})
        load_strict(phikon_model.backbone, PHIKON.unwrap_state_dict(bad, "b.bin", phikon_model.backbone), "b.bin")


# -- hf: door ------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_hf(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(1)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    model = ViTModel(config).eval()
    folder = tmp_path / "tiny-vit"
    model.save_pretrained(folder)
    processor = ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.25], resample=3
    )
    processor.save_pretrained(folder)
    return model, folder


def test_hf_folder_door(tiny_hf):
    model, folder = tiny_hf
    entry = get_extractor(f"hf:{folder}")
    assert (entry.name, entry.architecture) == (f"hf:{folder}", f"hf:{folder}")
    assert (entry.dim, entry.input_size, entry.pooling, entry.precision) == (32, 32, "cls", "auto")
    assert entry.mean == pytest.approx((0.5, 0.4, 0.3)) and entry.std == pytest.approx((0.2, 0.3, 0.25))
    assert entry.interpolation == "bicubic" and not entry.needs_weights
    built = entry.build()
    x = _images(2, 32)
    with torch.inference_mode():
        reference = model(pixel_values=x).last_hidden_state
        torch.testing.assert_close(built(x), reference[:, 0], rtol=0, atol=1e-6)
    fingerprint = entry.fingerprint(built)
    assert fingerprint["weights"]["kind"] == "builtin" and fingerprint["architecture"] == f"hf:{folder}"

    from extractors.hf import entry_for

    both = entry_for(str(folder), pooling="cls+mean")
    assert both.dim == 64
    with torch.inference_mode():
        torch.testing.assert_close(
            both.build()(x), torch.cat([reference[:, 0], reference[:, 1:].mean(1)], 1), rtol=0, atol=1e-6
        )


def test_hf_defaults_without_processor_and_clear_errors(tiny_hf, tmp_path):
    from extractors.hf import hf_token_features

    _, folder = tiny_hf
    (folder / "preprocessor_config.json").unlink()
    entry = get_extractor(f"hf:{folder}")
    assert (entry.input_size, entry.mean, entry.interpolation) == (32, (0.485, 0.456, 0.406), "bilinear")

    empty = tmp_path / "no-config"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        get_extractor(f"hf:{empty}")
    with pytest.raises(ValueError, match="no such folder"):
        get_extractor(f"hf:{tmp_path}/missing/folder")

    class NoTokens(nn.Module):
        def forward(self, pixel_values):
            return (pixel_values.mean(dim=(2, 3)),)

    with pytest.raises(TypeError, match="no last_hidden_state"):
        hf_token_features(NoTokens(), _images(1, 8), pooling="cls", num_prefix_tokens=1)


class _RunsCode:  # pickled by reference: torch.load(weights_only=True) refuses it, as it would any code
    pass


def test_hf_folder_with_a_pickle_that_would_run_code_is_one_line_refusal(tiny_hf):
    """A folder whose pytorch_model.bin is a pickle torch.load(weights_only=True) refuses: the same one-line
    refusal as every other weight file, not transformers' traceback and torch's advice to set weights_only=False.
    (transformers 5 writes safetensors whatever save_pretrained is told: the pickle replaces them.)"""
    from typer.testing import CliRunner

    from bench.cli import app

    _, folder = tiny_hf
    (folder / "model.safetensors").unlink()
    torch.save({"x": _RunsCode()}, folder / "pytorch_model.bin")
    done = CliRunner().invoke(app, ["check-extractor", f"hf:{folder}", "--device", "cpu"])
    assert done.exit_code == 1, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: refusing to load {folder / 'pytorch_model.bin'}: it is "
                                                   "not a plain tensor checkpoint (Unsupported global"), lines
    assert "weights_only=False" not in done.output and "Traceback" not in done.output


# -- openclip: door ------------------------------------------------------------------------------------------
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    name = "hemabench-tiny-clip"
    folder = tmp_path_factory.mktemp("openclip_configs")
    (folder / f"{name}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return name


def test_openclip_door_random_init(tiny_clip):
    import open_clip

    entry = get_extractor(f"openclip:{tiny_clip}")
    assert (entry.dim, entry.input_size, entry.pooling, entry.interpolation) == (16, 32, "model", "bicubic")
    assert entry.architecture == f"openclip:{tiny_clip}" and not entry.needs_weights
    model = entry.build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed)
        reference, _, _ = open_clip.create_model_and_transforms(tiny_clip)
    reference.eval()
    cfg = open_clip.get_model_preprocess_cfg(reference)
    assert entry.mean == tuple(cfg["mean"]) and entry.std == tuple(cfg["std"])
    assert entry.mean == open_clip.OPENAI_DATASET_MEAN
    x = _images(2, 32)
    with torch.inference_mode():
        features = model(x)
        assert features.shape == (2, 16)
        torch.testing.assert_close(features, reference.encode_image(x), rtol=0, atol=0)


def test_openclip_door_checkpoint_file_and_bad_tag(tiny_clip, tmp_path):
    import open_clip

    torch.manual_seed(123)
    trained, _, _ = open_clip.create_model_and_transforms(tiny_clip)
    path = tmp_path / "tiny_clip.pt"
    torch.save(trained.state_dict(), path)
    entry = get_extractor(f"openclip:{tiny_clip}/{path}")
    assert entry.weights[0].kind == "file" and not entry.needs_weights
    x = _images(2, 32)
    with torch.inference_mode():
        torch.testing.assert_close(entry.build()(x), trained.eval().encode_image(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="neither a pretrained tag"):
        get_extractor(f"openclip:{tiny_clip}/no_such_tag")
    with pytest.raises(ValueError, match="no model config"):
        get_extractor("openclip:NoSuchArch-99")
