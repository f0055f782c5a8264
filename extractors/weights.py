"""Reading weight files safely and loading them strictly, with errors that name the file and the keys."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from bench.core.errors import WeightsError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, or a pickled ``.pth/.pt/.bin`` with ``weights_only=True``.

    The container is returned as stored (it may nest the state dict, e.g. ``{"teacher": {...}}``); unwrapping
    is the job of the extractor family that knows its published format.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist (pass an existing file with --weights PATH)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
            raise WeightsError(f"cannot read safetensors file {path}: {exc}. Is it truncated? Download it again.") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(
            f"cannot read weight file {path}: {exc}. The file may be truncated or not a PyTorch checkpoint; "
            "download it again"
        ) from exc
    except Exception as exc:  # pickle.UnpicklingError for files that need arbitrary code to load
        raise WeightsError(
            f"refusing to load {path}: it is not a plain tensor checkpoint ({exc}). hemabench loads pickled "
            "files with weights_only=True only; convert it to safetensors or a plain state dict"
        ) from exc


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing and unexpected keys and shape clashes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    clashes = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or clashes:
        parts = [f"weights in {source} do not fit {type(module).__name__}:"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", clashes)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"  {len(keys)} {title}: {shown}")
        parts.append("  Check that --weights names a checkpoint of this extractor's architecture.")
        raise WeightsError("\n".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the module's state (names, dtypes, shapes, values): what the features actually depend on."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()
