"""The pathology foundation models and DINOv3 (issue 15), each against its model card: the architecture's key
layout (timm names, as the hub files hold them), the tensor counts a third-party release manifest lists, strict
loading of a checkpoint written here, the embedding against a direct timm forward with the card's pooling, the
card's mean/std, and the message when the weights are missing (gated models say how to get access).

The card arguments below are written here from the cards, independently of extractors/ (docs/extractors.md says
where each comes from). The forward tests build the architectures with 2 blocks (every block has the same
keys); the full depth is checked for the key layout (on the meta device) and, under ``-m slow``, end to end.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch
from torch import nn

from extractors import get_extractor
from extractors.base import IMAGENET_MEAN, IMAGENET_STD, MissingWeightsError
from extractors.sources import resolve
from tests.conftest import REPO

H_AND_E = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def _swiglu():
    from timm.layers import SwiGLUPacked

    return {"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}


# name -> (timm model, the card's create_model arguments, pooling, (mean, std), input size, interpolation,
#          tensors in the state dict (third-party release manifest / timm build), gated)
CARDS = {
    "uni": ("vit_large_patch16_224", dict(img_size=224, patch_size=16, init_values=1e-5, dynamic_img_size=True),
            "cls", IMAGENET, 224, "bilinear", 342, True),
    "uni2-h": ("vit_giant_patch14_224", dict(img_size=224, patch_size=14, depth=24, num_heads=24, init_values=1e-5,
                                             embed_dim=1536, mlp_ratio=2.66667 * 2, no_embed_class=True, reg_tokens=8,
                                             dynamic_img_size=True, swiglu=True),
               "cls", IMAGENET, 224, "bilinear", 343, True),
    "virchow2": ("vit_huge_patch14_224", dict(img_size=224, init_values=1e-5, reg_tokens=4, mlp_ratio=5.3375,
                                              global_pool="", dynamic_img_size=True, swiglu=True),
                 "cls+mean(after 5)", IMAGENET, 224, "bicubic", 455, True),
    "h-optimus-0": ("vit_giant_patch14_reg4_dinov2", dict(img_size=224, init_values=1e-5, dynamic_img_size=False),
                    "cls", H_AND_E, 224, "bilinear", 567, True),
    "h-optimus-1": ("vit_giant_patch14_reg4_dinov2", dict(img_size=224, init_values=1e-5, dynamic_img_size=False),
                    "cls", H_AND_E, 224, "bilinear", 567, True),
    "prov-gigapath": ("vit_giant_patch14_dinov2", dict(img_size=224, in_chans=3, patch_size=16, embed_dim=1536,
                                                       depth=40, num_heads=24, init_values=1e-05, mlp_ratio=5.33334),
                      "cls", IMAGENET, 224, "bicubic", 566, True),
    "kaiko-vits16": ("vit_small_patch16_224", dict(dynamic_img_size=True), "cls", HALF, 224, "bilinear", 150, False),
    "kaiko-vits8": ("vit_small_patch8_224", dict(dynamic_img_size=True), "cls", HALF, 224, "bilinear", 150, False),
    "kaiko-vitb16": ("vit_base_patch16_224", dict(dynamic_img_size=True), "cls", HALF, 224, "bilinear", 150, False),
    "kaiko-vitb8": ("vit_base_patch8_224", dict(dynamic_img_size=True), "cls", HALF, 224, "bilinear", 150, False),
    "kaiko-vitl14": ("vit_large_patch14_reg4_dinov2", dict(dynamic_img_size=True), "cls", HALF, 224, "bilinear", 343,
                     False),
    "dinov3-s": ("vit_small_patch16_dinov3", {}, "cls", IMAGENET, 256, "bilinear", 162, None),
    "dinov3-b": ("vit_base_patch16_dinov3", {}, "cls", IMAGENET, 256, "bilinear", 162, None),
    "dinov3-l": ("vit_large_patch16_dinov3", {}, "cls", IMAGENET, 256, "bilinear", 318, None),
}
SMALL = {"kaiko-vits16", "kaiko-vits8", "dinov3-s"}  # full size in the default suite


def _reference(name: str, **overrides):
    """The card's model, built by timm from the card's arguments (random weights)."""
    import timm

    model, kwargs, *_ = CARDS[name]
    kwargs = dict(kwargs)
    if kwargs.pop("swiglu", False):
        kwargs.update(_swiglu())
    return timm.create_model(model, pretrained=False, num_classes=0, **{**kwargs, **overrides})


def _card_embedding(name: str, tokens: torch.Tensor) -> torch.Tensor:
    pooling = CARDS[name][2]
    if pooling == "cls":
        return tokens[:, 0]
    assert pooling == "cls+mean(after 5)"  # Virchow2: "tokens 1-4 are register tokens so we ignore those"
    return torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)


def _shallow(entry, depth: int = 2):
    """The entry with its architecture cut to ``depth`` blocks (same keys per block), for fast tests."""
    from extractors.timm_hub import build_hub_model

    architecture = entry.build_fn.keywords["architecture"]
    shallow = dataclasses.replace(architecture, kwargs=(*architecture.kwargs, ("depth", depth)))
    return entry.replace(build_fn=functools.partial(build_hub_model, architecture=shallow))


@pytest.mark.parametrize("name", sorted(CARDS))
def test_the_entry_is_the_card(name):
    """Key layout and shapes equal the card's timm model's (what the hub file holds), the tensor count a
    third-party manifest lists, the card's preprocessing and the dim of the card's embedding."""
    entry = get_extractor(name)
    _, _, pooling, (mean, std), size, interpolation, tensors, _ = CARDS[name]
    with torch.device("meta"):
        ours = entry.build_fn(entry).backbone.state_dict()
        theirs = _reference(name).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert len(ours) == tensors
    assert (entry.mean, entry.std, entry.input_size, entry.interpolation) == (mean, std, size, interpolation)
    normalise = entry.transform().transforms[-1]
    assert tuple(normalise.mean) == mean and tuple(normalise.std) == std
    width = theirs["norm.weight"].shape[0]
    assert entry.dim == (2 * width if pooling.startswith("cls+mean") else width)


def _check_forward(name, entry, reference, tmp_path, fmt="bin"):
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in reference.state_dict().items()}  # no all-zero tensors
    reference.load_state_dict(state)
    path = tmp_path / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    model = entry.build(weights=path)  # strict: a missing or unexpected key fails
    size = entry.input_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = _card_embedding(name, reference.eval().forward_features(images))
        got = model(images)
    assert got.shape == (2, entry.dim)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    return model


# same code path as a sibling in the default suite (h-optimus-0, kaiko-vits16/-vitb16): only under -m slow
SAME_AS_A_SIBLING = {"h-optimus-1", "kaiko-vits8", "kaiko-vitb8"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SAME_AS_A_SIBLING else n
                                  for n in sorted(CARDS)])
def test_a_checkpoint_in_the_hub_layout_loads_strictly_and_embeds_as_the_card_says(name, tmp_path):
    entry = get_extractor(name)
    if name in SMALL:
        _check_forward(name, entry, _reference(name), tmp_path, fmt="safetensors" if name == "dinov3-s" else "bin")
    else:
        _check_forward(name, _shallow(entry), _reference(name, depth=2), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CARDS) - SMALL))
def test_full_size_checkpoint_loads_and_embeds_as_the_card_says(name, tmp_path):
    _check_forward(name, get_extractor(name), _reference(name), tmp_path)


def _meta_dinov3(size: str, seed: int = 0, zero_qv_bias: bool = True) -> dict:
    """A random state dict in the key layout of Meta's published DINOv3 file (tests/data/dinov3_meta_keys.json)."""
    layout = json.loads((REPO / "tests" / "data" / "dinov3_meta_keys.json").read_text())[f"dinov3_vit{size}16_meta"]
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in layout.items()}
    for key, bias in state.items():
        if key.endswith("attn.qkv.bias"):
            q, k, v = bias.chunk(3)
            k.zero_()  # Meta masks the key bias
            if zero_qv_bias:  # the published LVD-1689M files' query and value biases are zero
                q.zero_(), v.zero_()
        if key.endswith("bias_mask"):
            state[key] = torch.ones_like(bias)
    state["rope_embed.periods"] = torch.rand(layout["rope_embed.periods"], generator=g) + 1
    return state


def test_dinov3_loads_meta_published_layout_and_refuses_biases_it_would_drop(tmp_path):
    import timm

    entry = get_extractor("dinov3-s")
    torch.save(_meta_dinov3("s"), tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    model = entry.build(weights=tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    state = _meta_dinov3("s")
    # by hand: Meta's names -> timm's Eva names (storage tokens are timm's registers, LayerScale gammas renamed)
    reference = timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=0).eval()
    mapped = {}
    for key, value in state.items():
        if key.endswith(("bias_mask", "periods", "qkv.bias")) or key == "mask_token":
            continue
        key = key.replace("storage_tokens", "reg_token").replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2")
        mapped[key] = value
    reference.load_state_dict(mapped, strict=True)
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(model(images), reference.forward_features(images)[:, 0], rtol=0, atol=1e-5)
    torch.save(_meta_dinov3("s", zero_qv_bias=False), tmp_path / "biased.pth")
    with pytest.raises(ValueError, match="non-zero query/value biases"):
        entry.build(weights=tmp_path / "biased.pth")


@pytest.mark.parametrize("name, says", [
    ("uni", ["Access is gated: sign in at https://huggingface.co/MahmoodLab/UNI", "CC-BY-NC-ND-4.0",
             "hf download MahmoodLab/UNI pytorch_model.bin"]),
    ("h-optimus-1", ["Access is gated", "hf download bioptimus/H-optimus-1 pytorch_model.bin"]),
    ("dinov3-s", ["Its licence: DINOv3 License",
                  "hf download timm/vit_small_patch16_dinov3.lvd1689m model.safetensors"]),
    ("kaiko-vits16", ["releases/download/0.0.1/vits16.pth", "vits16.pth"]),
    ("phikon-v2", ["hf download owkin/phikon-v2 model.safetensors --revision "
                   "2ae989a9c40cffaa27f0a6cb29cc94d1d6f9a5fd"]),
    ("midnight", ["Its licence: MIT", "hf download kaiko-ai/midnight model.safetensors"]),
    ("quiltnet-b32", ["Its licence: MIT", "hf download wisdomik/QuiltNet-B-32 open_clip_pytorch_model.bin"]),
])
def test_missing_weights_say_how_to_get_them(name, says, tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        resolve(get_extractor(name), explicit=None, weights_home=tmp_path, offline=True)
    for text in says:
        assert text in str(error.value)
    assert "Traceback" not in str(error.value)


def test_catalog_groups_by_family_with_dim_parameters_licence_and_weights(tmp_path, monkeypatch):
    from extractors import EXTRACTORS
    from extractors.catalog import catalog

    monkeypatch.setattr(EXTRACTORS, "names", lambda: ["uni2-h", "kaiko-vits16", "color-histogram"])
    (tmp_path / "kaiko-vits16").mkdir()
    torch.save(_reference("kaiko-vits16").state_dict(), tmp_path / "kaiko-vits16" / "vits16.pth")
    rows = {row.name: row for row in catalog(tmp_path)}
    assert [row.family for row in catalog(tmp_path)] == ["classical", "kaiko", "uni"]
    with torch.device("meta"):
        card_size = sum(p.numel() for p in _reference("uni2-h").parameters())
    assert (rows["uni2-h"].dim, rows["uni2-h"].parameters) == (1536, card_size)
    assert rows["uni2-h"].licence == "CC-BY-NC-ND-4.0 (gated)" and rows["uni2-h"].weights == "missing"
    assert rows["kaiko-vits16"].weights == "present" and rows["color-histogram"].weights == "not needed"


# transformers Dinov2Model files (Phikon-v2, Midnight): the card's config, the published transformers-4 names
DINOV2_CARDS = {
    "phikon-v2": (dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16,
                       use_swiglu_ffn=False), "cls", IMAGENET, "bicubic", 1024),
    "midnight": (dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, patch_size=14,
                      use_swiglu_ffn=True), "cls+mean", HALF, "bilinear", 3072),
}


def _v4_names(state: dict) -> dict:
    """The installed Dinov2Model's state dict in the transformers-4 spelling of the hub files (by hand)."""
    out = {}
    for key, value in state.items():
        if ".mlp.up_proj." in key:
            continue
        if ".mlp.gate_proj." in key:
            out[key.replace("gate_proj", "weights_in")] = torch.cat([value, state[key.replace("gate_proj", "up_proj")]])
            continue
        for new, old in (("attention.q_proj.", "attention.attention.query."),
                         ("attention.k_proj.", "attention.attention.key."),
                         ("attention.v_proj.", "attention.attention.value."),
                         ("attention.o_proj.", "attention.output.dense."), ("mlp.down_proj.", "mlp.weights_out.")):
            key = key.replace(new, old)
        out[key] = value
    return out


@pytest.mark.parametrize("name", sorted(DINOV2_CARDS))
def test_dinov2_files_load_as_transformers_loads_them(name, tmp_path):
    """A snapshot folder (config.json + model.safetensors in transformers-4 names, 2 layers) loads strictly and
    embeds as transformers' own ``from_pretrained`` of the same folder, pooled as the card says; a config.json
    of another architecture is refused."""
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    from extractors.hf_dinov2 import build_dinov2

    card, pooling, (mean, std), interpolation, dim = DINOV2_CARDS[name]
    entry = get_extractor(name)
    assert (entry.dim, entry.pooling, entry.mean, entry.std, entry.interpolation) == (dim, pooling, mean, std,
                                                                                      interpolation)
    assert dict(entry.build_fn.keywords["config"]) == {**card, "image_size": 224}
    small = {"num_hidden_layers": 2, "hidden_size": 192, "num_attention_heads": 3}  # the card's layout, smaller
    shallow = entry.replace(build_fn=functools.partial(
        build_dinov2, config=(*entry.build_fn.keywords["config"], *small.items())))
    config = Dinov2Config(**{**card, **small, "image_size": 518})  # the file's own grid: 518 px
    torch.manual_seed(0)
    donor = Dinov2Model(config)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in donor.state_dict().items()}
    snapshot = tmp_path / "snapshot"
    config.save_pretrained(snapshot)
    save_file(_v4_names(state), snapshot / "model.safetensors")
    reference, info = Dinov2Model.from_pretrained(snapshot, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    weights = resolve(shallow, explicit=snapshot, weights_home=tmp_path).path  # --weights SNAPSHOT_FOLDER
    assert weights == snapshot / "model.safetensors"
    model = shallow.build(weights=weights)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        tokens = reference.eval()(pixel_values=images).last_hidden_state
        expected = tokens[:, 0] if pooling == "cls" else torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=-1)
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    other = json.loads((snapshot / "config.json").read_text()) | {"num_attention_heads": 4}
    (snapshot / "config.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="num_attention_heads: 4 in the file"):
        shallow.build(weights=weights)


def test_quiltnet_is_open_clips_vit_b32_visual_tower_from_the_whole_clip_file(tmp_path):
    """The hub file holds the whole CLIP model in open_clip's names: the visual tower loads strictly and embeds
    as open_clip's own ``encode_image`` of the same weights; OpenAI CLIP's mean/std."""
    import open_clip

    entry = get_extractor("quiltnet-b32")
    assert (entry.mean, entry.std) == (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    assert (entry.dim, entry.input_size, entry.interpolation) == (512, 224, "bicubic")
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    torch.save(reference.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    model = entry.build(weights=tmp_path / "open_clip_pytorch_model.bin")
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(images), reference.encode_image(images), rtol=0, atol=1e-5)
