"""The xformers route, checked on CPU against timm's own forward with a stand-in for xformers' kernel."""

import sys
import types

import torch
import torch.nn.functional as F

from extractors import get_extractor
from extractors.attention import use_xformers, xformers_available


def _fake_xformers(monkeypatch, calls):
    """xformers.ops.memory_efficient_attention's contract: (B, N, H, D) inputs and output, softmax(q k^T * scale) v."""

    def memory_efficient_attention(q, k, v, scale=None):
        calls.append(q.shape)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
        return out.transpose(1, 2)

    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = memory_efficient_attention
    package = types.ModuleType("xformers")
    package.ops = ops
    monkeypatch.setitem(sys.modules, "xformers", package)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)


def test_xformers_route_gives_timms_features(monkeypatch):
    calls = []
    _fake_xformers(monkeypatch, calls)
    entry = get_extractor("vit-s14-random")
    plain, routed = entry.build(), entry.build()
    assert use_xformers(routed) == 12
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(routed(x), plain(x), rtol=1e-5, atol=1e-5)
    assert calls and calls[0] == (2, 257, 6, 64)


def test_xformers_only_on_cuda(monkeypatch):
    _fake_xformers(monkeypatch, [])
    assert not xformers_available(torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "xformers", None)
    assert not xformers_available(torch.device("cuda"))
