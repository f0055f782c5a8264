"""Reading weight files safely and loading them strictly, with errors that name the file and the keys."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from bench.core.errors import WeightsError

# what torch.load raises for a truncated or damaged file; anything else (pickle.UnpicklingError first) is a pickle
# that weights_only=True refuses, or one too damaged to tell
READ_ERRORS = (EOFError, OSError, RuntimeError, zipfile.BadZipFile, ValueError)


def load_error_reason(exc: BaseException, limit: int = 200) -> str:
    """One line from an error of ``torch.load(weights_only=True)``, whose own message spans a dozen lines: the
    unpickler's reason (e.g. "Unsupported global: GLOBAL mymodule.MyClass was not an allowed global by default")
    for a refused pickle, else the exception's type and first sentence."""
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().split("\n\n", 1)[0]
        reason = " ".join(reason.split()).split(". Please use", 1)[0].rstrip(".")
    else:
        first = text.splitlines()[0].strip().split(". ", 1)[0] if text else ""  # its first sentence
        reason = f"{type(exc).__name__}: {first}" if first else f"{type(exc).__name__} (the file ends early)"
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


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
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save writes a zip archive, older torch a pickle
        raise WeightsError(f"{path} is not a weight file at all: a PyTorch checkpoint is a zip archive or a pickle, "
                           f"this file starts with {head!r}. Pass the model's .pth/.bin/.safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as exc:
        raise WeightsError(
            f"cannot read weight file {path}: {load_error_reason(exc)}. The file may be truncated or not a PyTorch "
            "checkpoint; download it again"
        ) from exc
    except Exception as exc:  # pickle.UnpicklingError for files that need arbitrary code to load
        raise refused_pickle(path, exc) from exc


def refused_pickle(path: str | Path, exc: BaseException) -> WeightsError:
    """The one-line refusal of a pickle that ``torch.load(weights_only=True)`` will not load (it would run code),
    wherever it is read: by hemabench, or by a library hemabench calls (transformers' ``from_pretrained``)."""
    return WeightsError(
        f"refusing to load {path}: it is not a plain tensor checkpoint ({load_error_reason(exc)}). hemabench "
        "loads pickled files with weights_only=True only; convert it to safetensors or a plain state dict"
    )


def unpickling_error(exc: BaseException | None) -> BaseException | None:
    """The ``pickle.UnpicklingError`` that caused ``exc`` (itself, or one in its chain), else None."""
    import pickle

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, pickle.UnpicklingError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def state_dict_mismatches(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, Any],
                          shown: int = 20) -> list[str]:
    """What keeps ``state_dict`` from loading strictly into a module whose state is ``own`` (only names and shapes
    of ``own`` are read: a module on the meta device will do): one line per kind of problem, [] when it fits."""
    missing = sorted(set(own) - set(state_dict), key=str)
    unexpected = sorted(set(state_dict) - set(own), key=str)
    shared = set(own) & set(state_dict)
    not_tensors = sorted((k for k in shared if not isinstance(state_dict[k], torch.Tensor)), key=str)
    clashes = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in shared
        if k not in not_tensors and tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    lines = []
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("values that are not tensors",
                        not_tensors), ("shape mismatches", clashes)):
        if keys:
            listed = ", ".join(map(str, keys[:shown])) + (f", ... ({len(keys) - shown} more)" if len(keys) > shown else "")
            lines.append(f"{len(keys)} {title}: {listed}")
    return lines


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path,
                assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing and unexpected keys and shape clashes.

    ``assign``: the file's tensors become the module's (a module built on the meta device has none to copy
    into), converted to the dtype the module declares, as a copy into it would."""
    own = module.state_dict()
    problems = state_dict_mismatches(own, state_dict)
    if problems:  # one line, as every error a user can fix (bench.cli prints it as is)
        raise WeightsError(f"weights in {source} do not fit {type(module).__name__}: {'; '.join(problems)}; check "
                           "that --weights names a checkpoint of this extractor's architecture")
    if assign:
        state_dict = {key: value.to(own[key].dtype) for key, value in state_dict.items()}
    module.load_state_dict(dict(state_dict), strict=True, assign=assign)


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the module's state (names, dtypes, shapes, values): what the features actually depend on."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()
