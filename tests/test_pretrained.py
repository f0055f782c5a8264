"""The paper's extractors on checkpoints written here in the exact published formats (random values, real key
names and shapes from tests/data/checkpoint_keys.json), weight resolution and verified downloads."""

import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch
import torch.nn.functional as F

from extractors import get_extractor
from extractors.base import MissingWeightsError, WeightSource
from extractors.sources import ChecksumError, download, resolve
from extractors.weights import WeightsError
from tests.conftest import KEYS_FILE


@functools.lru_cache(maxsize=1)
def _formats() -> dict:
    return json.loads(KEYS_FILE.read_text())


def _random_like(spec, seed=0):
    """Nested {name: shape} -> the same structure with random tensors (BN statistics kept valid)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out[key] = _random_like(value, seed + 1)
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = torch.rand(value, generator=g) + 0.5
        else:
            out[key] = torch.randn(value, generator=g) * 0.02
    return out


def write_format(name, path, seed=0):
    state = _random_like(_formats()[name], seed)
    torch.save(state, path)
    return state


def _images(n=2, size=224, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference_vit(timm_name, backbone_state):
    """timm ViT loaded by hand from DINOv2 key names (independent of extractors.dinov2's converter)."""
    import timm

    model = timm.create_model(timm_name, pretrained=False, img_size=224, num_classes=0).eval()
    mapped = {}
    for key, value in backbone_state.items():
        if key == "mask_token":
            continue
        mapped[key.replace("mlp.w12", "mlp.fc1").replace("mlp.w3", "mlp.fc2")] = value
    model.load_state_dict(mapped, strict=True)
    return model


def test_dinobloom_s_teacher_file_loads_and_matches_a_hand_loaded_timm_vit(tmp_path):
    path = tmp_path / "DinoBloom-S.pth"
    container = write_format("dinobloom_s", path)
    entry = get_extractor("dinobloom-s")
    model = entry.build(weights=path)
    teacher = container["teacher"]
    backbone = {k[len("backbone."):]: v for k, v in teacher.items() if k.startswith("backbone.")}
    reference = _reference_vit("vit_small_patch14_dinov2", backbone)
    x = _images()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.forward_features(x)[:, 0], rtol=0, atol=0)
    assert model(x).shape == (2, 384)


def _dinov2_interpolate_reference(pos_embed, w0=16, offset=0.1):
    """DINOv2's interpolate_pos_encoding for a 224-px input, written out from the DINOv2 source."""
    n = pos_embed.shape[1] - 1
    m = int(n**0.5)
    patch = pos_embed[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    sx = float(w0 + offset) / m
    patch = F.interpolate(patch, mode="bicubic", antialias=False, scale_factor=(sx, sx))
    return torch.cat([pos_embed[:, :1], patch.permute(0, 2, 3, 1).reshape(1, -1, pos_embed.shape[2])], dim=1)


def test_dinov2_hub_file_is_resampled_to_224_as_dinov2_does(tmp_path):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    state = write_format("dinov2_vits14_hub", path)
    assert state["pos_embed"].shape == (1, 1370, 384)
    model = get_extractor("dinov2-s").build(weights=path)
    expected = _dinov2_interpolate_reference(state["pos_embed"])
    torch.testing.assert_close(model.backbone.pos_embed.detach(), expected, rtol=0, atol=0)
    reference = _reference_vit("vit_small_patch14_dinov2", {**state, "pos_embed": expected})
    x = _images(seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.forward_features(x)[:, 0], rtol=0, atol=0)


def test_timm_format_file_loads_too(tmp_path):
    donor = get_extractor("vit-s14-random").replace(seed=7).build()
    torch.save(donor.backbone.state_dict(), tmp_path / "timm_dinobloom_s.pth")
    model = get_extractor("dinobloom-s").build(weights=tmp_path / "timm_dinobloom_s.pth")
    x = _images(seed=2)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), donor(x), rtol=0, atol=0)


def test_swiglu_w12_w3_mapping_matches_dinov2_ffn():
    """DINOv2's SwiGLUFFN: x1, x2 = w12(x).chunk(2); w3(silu(x1) * x2) — against timm's packed SwiGLU."""
    from timm.layers import SwiGLUPacked

    torch.manual_seed(0)
    w12, w3 = torch.nn.Linear(8, 2 * 12), torch.nn.Linear(12, 8)
    mlp = SwiGLUPacked(in_features=8, hidden_features=2 * 12, act_layer=torch.nn.SiLU)
    from extractors.dinov2 import unwrap_dinov2

    class _Backbone:
        num_prefix_tokens = 1

    renamed = unwrap_dinov2(
        {"blocks.0.mlp.w12.weight": w12.weight, "blocks.0.mlp.w12.bias": w12.bias,
         "blocks.0.mlp.w3.weight": w3.weight, "blocks.0.mlp.w3.bias": w3.bias}, "t", _Backbone()
    )
    mlp.load_state_dict({k.removeprefix("blocks.0.mlp."): v for k, v in renamed.items()})
    x = torch.randn(5, 8)
    x1, x2 = w12(x).chunk(2, dim=-1)
    torch.testing.assert_close(mlp(x), w3(F.silu(x1) * x2))


def test_dinobloom_file_with_foreign_keys_is_refused(tmp_path):
    container = _random_like(_formats()["dinobloom_s"])
    container["teacher"]["backbone.blocks.0.extra.weight"] = torch.zeros(3)
    del container["teacher"]["backbone.norm.bias"]
    torch.save(container, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        get_extractor("dinobloom-s").build(weights=tmp_path / "bad.pth")
    assert "missing keys: norm.bias" in str(info.value) and "unexpected keys: blocks.0.extra.weight" in str(info.value)
    torch.save({"teacher": {"student.x": torch.zeros(1)}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="backbone"):
        get_extractor("dinobloom-s").build(weights=tmp_path / "odd.pth")


@pytest.mark.parametrize("name,cut", [("resnet50", "fc"), ("resnet50-pool", "layer4"), ("resnet50-trunc", "layer3")])
def test_resnet50_cuts_on_a_torchvision_file(tmp_path, name, cut):
    from torchvision.models import resnet50

    state = write_format("resnet50_torchvision", tmp_path / "resnet50-11ad3fa6.pth")
    model = get_extractor(name).build(weights=tmp_path / "resnet50-11ad3fa6.pth")
    reference = resnet50()
    reference.load_state_dict(state)
    reference.eval()
    x = _images(seed=3)
    with torch.inference_mode():
        if cut == "fc":
            expected = reference(x)
        else:
            r = reference
            h = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
            expected = (r.layer4(h) if cut == "layer4" else h).mean(dim=(2, 3))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_pooling_override_names_and_dims():
    entry = get_extractor("dinobloom-s")
    both = entry.with_pooling("cls+mean")
    assert both.name == "dinobloom-s+cls+mean" and both.dim == 768
    assert both.with_pooling("mean").dim == 384
    with pytest.raises(ValueError, match="fixed output"):
        get_extractor("resnet50").with_pooling("mean")


# -- resolution and downloads ------------------------------------------------------------------------------
class _Server:
    """A local HTTP server on 127.0.0.1 serving given bytes (optionally lying about the length)."""

    def __init__(self, files):
        files = dict(files)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body, claimed = files.get(self.path, (None, None))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(claimed or len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weight_bytes(tmp_path):
    path = tmp_path / "served.pth"
    write_format("dinobloom_s", path)
    return path.read_bytes()


def test_download_verifies_sha256_and_leaves_nothing_partial(tmp_path, weight_bytes):
    digest = hashlib.sha256(weight_bytes).hexdigest()
    server = _Server({"/DinoBloom-S.pth": (weight_bytes, None), "/short.pth": (weight_bytes[:1000], len(weight_bytes))})
    try:
        dest = tmp_path / "w" / "DinoBloom-S.pth"
        assert download(f"{server.url}/DinoBloom-S.pth", dest, digest) == dest
        assert dest.read_bytes() == weight_bytes
        bad = tmp_path / "bad" / "DinoBloom-S.pth"
        with pytest.raises(ChecksumError, match="not kept"):
            download(f"{server.url}/DinoBloom-S.pth", bad, "0" * 64)
        assert not bad.exists() and list(bad.parent.iterdir()) == []
        with pytest.raises(OSError):
            download(f"{server.url}/short.pth", tmp_path / "short" / "x.pth")
        assert list((tmp_path / "short").iterdir()) == []
    finally:
        server.close()


def test_resolution_order_and_fetch_through_the_entry(tmp_path, weight_bytes, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    digest = hashlib.sha256(weight_bytes).hexdigest()
    server = _Server({"/files/DinoBloom-S.pth": (weight_bytes, None)})
    try:
        entry = get_extractor("dinobloom-s").replace(
            weights=(WeightSource("url", f"{server.url}/files/DinoBloom-S.pth", sha256=digest),)
        )
        home = tmp_path / "weights"
        with pytest.raises(MissingWeightsError, match=r"offline.*DinoBloom-S.pth"):
            resolve(entry, explicit=None, weights_home=home, offline=True)
        got = resolve(entry, explicit=None, weights_home=home)
        assert got.origin == "download" and got.path == home / "dinobloom-s" / "DinoBloom-S.pth"
        assert resolve(entry, explicit=None, weights_home=home, offline=True).origin == "weights-folder"
        explicit = tmp_path / "mine.pth"
        explicit.write_bytes(b"anything")
        assert resolve(entry, explicit=explicit, weights_home=home).path == explicit
        got.path.write_bytes(weight_bytes[:-1] + b"x")  # corrupted in place: refused
        with pytest.raises(ChecksumError):
            resolve(entry, explicit=None, weights_home=home)
        got.path.unlink()
        cache = tmp_path / "torch_home" / "hub" / "checkpoints"
        cache.mkdir(parents=True)
        (cache / "DinoBloom-S.pth").write_bytes(weight_bytes)
        assert resolve(entry, explicit=None, weights_home=home, offline=True).origin == "torch-cache"
    finally:
        server.close()


def test_published_dinobloom_s_checksum_is_enforced(bench_home):
    folder = bench_home / "weights" / "dinobloom-s"
    folder.mkdir(parents=True)
    (folder / "DinoBloom-S.pth").write_bytes(b"not the published file")
    with pytest.raises(ChecksumError, match="c2f7990b"):
        resolve(get_extractor("dinobloom-s"), explicit=None, weights_home=bench_home / "weights", offline=True)


# every built-in that needs weights: (format in checkpoint_keys.json, file name, container)
WRITTEN = {
    "resnet50": ("resnet50_torchvision", "resnet50-11ad3fa6.pth"),
    "resnet50-pool": ("resnet50_torchvision", "resnet50-11ad3fa6.pth"),
    "resnet50-trunc": ("resnet50_torchvision", "resnet50-11ad3fa6.pth"),
    "ctranspath": ("ctranspath", "ctranspath.pth"),
    "phikon": ("phikon_transformers4_vitmodel", "pytorch_model.bin"),
    **{f"dinov2-{s}": (f"dinov2_vit{s}14_hub", f"dinov2_vit{s}14_pretrain.pth") for s in "sblg"},
    **{f"dinobloom-{s}": (f"dinobloom_{s}", f"DinoBloom-{s.upper()}.pth") for s in "sblg"},
}
# Run under -m slow: the large ones, and the B sizes, whose loading path is their S sibling's (same format and
# code, 4x the tensors; ~14 s each here)
LARGE = {"dinov2-b", "dinov2-l", "dinov2-g", "dinobloom-b", "dinobloom-l", "dinobloom-g"}


def _check(name, tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    fmt, file = WRITTEN[name]
    write_format(fmt, tmp_path / file)
    result = CliRunner().invoke(app, ["check-extractor", name, "--weights", str(tmp_path / file)])
    assert result.exit_code == 0, result.output
    assert f"dim {get_extractor(name).dim}" in result.output


def test_every_builtin_needing_weights_is_covered():
    from extractors import EXTRACTORS
    from tests.test_foundation_models import CARDS, DINOV2_CARDS  # the foundation models, tested on their cards

    needing = {n for n in EXTRACTORS.names() if get_extractor(n).needs_weights}
    assert needing == set(WRITTEN) | set(CARDS) | set(DINOV2_CARDS) | {"quiltnet-b32"}


# Phikon's loading has its own tests (test_phikon_hf_openclip.py), and the ResNet-50 cuts load the same torchvision
# file as resnet50 (test_resnet50_cuts_on_a_torchvision_file): their checks here run under -m slow
ELSEWHERE = {"phikon", "resnet50-pool", "resnet50-trunc"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ELSEWHERE else n
                                  for n in sorted(set(WRITTEN) - LARGE)])
def test_check_extractor_on_written_weights(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE))
def test_check_extractor_on_written_weights_large(name, tmp_path):
    _check(name, tmp_path)


def test_weights_may_name_a_hub_snapshot_folder(tmp_path):
    """--weights <the folder a hub snapshot was downloaded to> names its weight file (config.json, README.md
    beside it); a folder with no or several unknown weight files says what to do. (Every command's ``--weights``
    reaches :func:`resolve` as ``explicit``, in ``bench.runner.build_extractor``; a resolved file loads as in
    test_check_extractor_on_written_weights.)"""
    snapshot = tmp_path / "owkin-phikon"
    snapshot.mkdir()
    (snapshot / "pytorch_model.bin").write_bytes(b"weights")
    (snapshot / "config.json").write_text("{}")
    (snapshot / "README.md").write_text("# phikon")
    assert resolve(get_extractor("phikon"), explicit=snapshot, weights_home=tmp_path).path == snapshot / "pytorch_model.bin"
    empty, several = tmp_path / "empty", tmp_path / "several"
    empty.mkdir(), several.mkdir()
    (several / "a.pth").write_bytes(b"x"), (several / "b.pth").write_bytes(b"x")
    with pytest.raises(MissingWeightsError, match="holds no weight file"):
        resolve(get_extractor("phikon"), explicit=empty, weights_home=tmp_path)
    with pytest.raises(MissingWeightsError, match=r"holds several weight files \(a.pth, b.pth\)"):
        resolve(get_extractor("phikon"), explicit=several, weights_home=tmp_path)


def test_timm_door_with_a_written_checkpoint(tmp_path):
    import timm

    entry = get_extractor("timm:resnet18")
    assert entry.dim == 512 and entry.interpolation == "bicubic"
    donor = timm.create_model("resnet18", pretrained=False)  # with its classifier, as a timm file would be
    torch.save(donor.state_dict(), tmp_path / "resnet18.pth")
    model = entry.build(weights=tmp_path / "resnet18.pth")
    donor.reset_classifier(0)
    donor.eval()
    x = _images(seed=4)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), donor(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="Did you mean"):
        get_extractor("timm:resnet181")


def test_weights_cli_list_and_fetch(tmp_path, weight_bytes, bench_home, monkeypatch):
    from typer.testing import CliRunner

    from bench.cli import app

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    server = _Server({"/DinoBloom-S.pth": (weight_bytes, None)})
    try:
        plugin = tmp_path / "served_entry.py"
        plugin.write_text(
            "from extractors import get_extractor\n"
            "from extractors.base import WeightSource\n"
            f"ENTRY = get_extractor('dinobloom-s').replace(weights=(WeightSource('url', '{server.url}/DinoBloom-S.pth',"
            f" sha256='{hashlib.sha256(weight_bytes).hexdigest()}'),))\n"
        )
        runner = CliRunner()
        listing = runner.invoke(app, ["weights", "list"])
        assert listing.exit_code == 0 and "dinobloom-s" in listing.output and "missing" in listing.output
        fetched = runner.invoke(app, ["weights", "fetch", f"{plugin}:ENTRY"])
        assert fetched.exit_code == 0, fetched.output
        stored = list((bench_home / "weights").rglob("DinoBloom-S.pth"))
        assert len(stored) == 1 and stored[0].read_bytes() == weight_bytes
        assert runner.invoke(app, ["weights", "fetch", "vit-s14-random"]).output.strip().endswith("needs no weights")
        refused = runner.invoke(app, ["weights", "fetch", "dinobloom-s"], env={"BENCH_OFFLINE": "1"})
        assert refused.exit_code == 1 and "offline" in refused.output
        assert "bench weights fetch" not in refused.output  # it is the command that failed: not suggested again
    finally:
        server.close()


def test_run_with_pooling_override(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "cells", {"a": 6, "b": 6})
    result = CliRunner().invoke(app, ["run", "-e", "vit-s14-random+cls+mean", "-t", f"imagefolder:{root}", "-p",
                                      "knn-1", "--results", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["extractor"]["name"] == "vit-s14-random+cls+mean"
    assert record["extractor"]["fingerprint"]["dim"] == 768 and record["extractor"]["fingerprint"]["pooling"] == "cls+mean"


def test_pinned_hub_source_downloads_through_huggingface_hub(tmp_path, weight_bytes, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    served = tmp_path / "hub" / "model.pth"
    served.parent.mkdir()
    served.write_bytes(weight_bytes)
    calls = []

    def fake_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename, revision))
        return str(served)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    digest = hashlib.sha256(weight_bytes).hexdigest()
    pinned = WeightSource("hub", "someone/dinobloom-s", sha256=digest, revision="0123abc", filename="model.pth")
    entry = get_extractor("dinobloom-s").replace(weights=(pinned,))
    got = resolve(entry, explicit=None, weights_home=tmp_path / "w")
    assert got.origin == "download" and got.path == served and calls == [("someone/dinobloom-s", "model.pth", "0123abc")]
    with pytest.raises(ChecksumError):
        resolve(entry.replace(weights=(WeightSource("hub", "x/y", sha256="0" * 64, revision="1", filename="m"),)),
                explicit=None, weights_home=tmp_path / "w")
    unpinned = entry.replace(weights=(WeightSource("hub", "someone/dinobloom-s"),))
    with pytest.raises(MissingWeightsError):
        resolve(unpinned, explicit=None, weights_home=tmp_path / "w")
    assert len(calls) == 2  # the unpinned source was never fetched
