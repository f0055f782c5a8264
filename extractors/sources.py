"""Where an entry's weights come from: an explicit file, the weights folder, the libraries' caches, a download.

Resolution order (first hit wins):

1. ``--weights PATH`` (the user's explicit choice; not checked against the published sha256, but hashed into
   the result's fingerprint);
2. ``$BENCH_HOME/weights/<name>/``: the published file name if present, else the only weight file there;
3. the libraries' caches: ``$TORCH_HOME/hub/checkpoints/<file>`` (torch.hub's download folder) and the Hugging
   Face cache (``$HF_HOME``) for hub sources;
4. a download of a URL source into ``$BENCH_HOME/weights/<name>/``, only when allowed (not ``--offline``, not
   ``HF_HUB_OFFLINE``/``BENCH_OFFLINE``), verified against its sha256.

Files taken from 2-4 under their published name are verified against the published sha256 where it is known
(a full digest, or the 8-hex prefix torchvision puts in its file names). A mismatch is refused, and a download
that fails or mismatches leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import ChecksumError, MissingWeightsError, WeightsError
from bench.core.files import atomic_write, sha256_file_remembered
from bench.core.registry import safe_name
from extractors.base import ExtractorEntry, WeightSource

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class Resolved:
    path: Path | None  # None: the entry needs no file (random initialisation, or the model loads its own)
    origin: str  # explicit | weights-folder | torch-cache | hf-cache | download | random | builtin


def offline_requested(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("BENCH_OFFLINE", "") not in ("", "0")


def file_name(source: WeightSource) -> str | None:
    if source.kind == "url":
        return Path(urllib.parse.urlparse(source.location).path).name or None
    return None


def verify(path: Path, source: WeightSource) -> None:
    """Refuse a file whose sha256 differs from the source's (a full digest or a torchvision-style prefix)."""
    if not source.sha256:
        return
    actual = sha256_file_remembered(path)
    if not actual.startswith(source.sha256.lower()):
        raise ChecksumError(
            f"{path} has sha256 {actual}, but the published file ({source.location}) has "
            f"{source.sha256}{'...' if len(source.sha256) < 64 else ''}. Delete it and fetch it again "
            "(`bench weights fetch NAME`), or pass your own file explicitly with --weights"
        )


def weights_folder(entry: ExtractorEntry, weights_home: Path) -> Path:
    """``$BENCH_HOME/weights/<name>/`` (folder-safe form of names such as ``timm:vit_small_patch14_dinov2``)."""
    return weights_home / safe_name(entry.name)


def _torch_cache() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser() / "hub" / "checkpoints"


def _find_local(entry: ExtractorEntry, weights_home: Path) -> Resolved | None:
    for source in entry.weights:  # an entry made for one file (trained:<export>) names it
        if source.kind == "file" and Path(source.location).is_absolute() and Path(source.location).is_file():
            return Resolved(Path(source.location), "file")
    folder = weights_folder(entry, weights_home)
    for source in entry.weights:
        name = file_name(source)
        if name and (folder / name).is_file():
            verify(folder / name, source)
            return Resolved(folder / name, "weights-folder")
    if folder.is_dir() and any(p.is_file() and p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        return Resolved(weight_file_in(folder, entry, "weights folder"), "weights-folder")
    for source in entry.weights:
        name = file_name(source)
        if name and (_torch_cache() / name).is_file():
            verify(_torch_cache() / name, source)
            return Resolved(_torch_cache() / name, "torch-cache")
        if source.kind == "hub" and source.revision:
            cached = _hf_cached(source)
            if cached is not None:
                return Resolved(cached, "hf-cache")
    return None


HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # transformers' and timm's names on the hub


def weight_file_in(folder: Path, entry: ExtractorEntry, what: str) -> Path:
    """The weight file of a folder such as a hub snapshot (config.json, README.md and the weights): the entry's
    published file name, else the hub's usual names, else the only weight file there."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    published = [n for n in (file_name(s) or s.filename for s in entry.weights) if n]
    for name in (*published, *HUB_WEIGHT_FILES):
        if (folder / name).is_file():
            return folder / name
    if len(files) == 1:
        return files[0]
    if not files:
        raise MissingWeightsError(f"{what} {folder}: the folder holds no weight file ({', '.join(WEIGHT_SUFFIXES)}); "
                                  "name the file itself, or the folder a hub snapshot was downloaded to")
    raise MissingWeightsError(f"{what} {folder} holds several weight files ({', '.join(p.name for p in files)}); "
                              "keep one there, or name the one to load with --weights FILE")


def _hf_cached(source: WeightSource) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    for filename in (source.filename,) if source.filename else ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(source.location, filename, revision=source.revision)
        if isinstance(hit, str):
            return Path(hit)
    return None


def download(url: str, dest: Path, sha256: str | None = None, *, timeout: float = 60.0, progress=None) -> Path:
    """Stream ``url`` to ``dest`` through a temporary file in the same folder, verify the length and the sha256,
    then rename it into place (:func:`bench.core.files.atomic_write`: a failure leaves nothing behind)."""

    def stream(out) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if total and done != total:
            raise OSError(f"download of {url} stopped after {done} of {total} bytes")
        actual = digest.hexdigest()
        if sha256 and not actual.startswith(sha256.lower()):
            raise ChecksumError(
                f"download of {url} has sha256 {actual}, expected {sha256}; the file was not kept. "
                "The server may have changed the file; check the source"
            )

    atomic_write(dest, stream)
    return dest


def resolve(
    entry: ExtractorEntry,
    *,
    explicit: str | Path | None,
    weights_home: Path,
    offline: bool = False,
    allow_download: bool = True,
    log=None,
    fetching: bool = False,
) -> Resolved:
    """The weight file for ``entry`` (see the module docstring for the order), or a clear error."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():  # a hub snapshot folder (config.json + the weight file)
            return Resolved(weight_file_in(path, entry, "--weights"), "explicit")
        if not path.is_file():
            raise MissingWeightsError(f"--weights {path}: no such file or folder")
        from extractors.trained import refuse_as_weights  # (it imports the ViT code: only when a file is given)

        refuse_as_weights(entry, path)
        return Resolved(path, "explicit")
    if not entry.needs_weights:  # random initialisation, or a model that loads its own weights (hf:, openclip:)
        return Resolved(None, "random" if any(s.kind == "random" for s in entry.weights) else "builtin")
    found = _find_local(entry, weights_home)
    if found is not None:
        return found
    downloadable = [s for s in entry.weights if s.kind == "url" or (s.kind == "hub" and s.revision)]
    if allow_download and downloadable and not offline_requested(offline):
        source = downloadable[0]
        try:
            if source.kind == "hub":
                return Resolved(_hub_download(source, log), "download")
            name = file_name(source)
            if name is None:
                raise WeightsError(f"{entry.name}: the weights URL {source.location} names no file to save")
            dest = weights_folder(entry, weights_home) / name
            if log is not None:
                log(f"downloading {source.location} -> {dest}")
            return Resolved(download(source.location, dest, source.sha256), "download")
        except OSError as exc:  # no network, HTTP error, interrupted transfer (urllib's errors are OSErrors)
            why = missing_message(entry, weights_home, False, fetching)
            raise MissingWeightsError(f"download failed ({exc}). {why}") from exc
    raise MissingWeightsError(missing_message(entry, weights_home, offline_requested(offline), fetching))


def _hub_download(source: WeightSource, log) -> Path:
    """A hub source pinned to a revision: huggingface_hub's download into its own cache (HF_HOME), verified
    against the source's sha256 where one is given. Hub sources without a pinned revision are never fetched."""
    from huggingface_hub import hf_hub_download

    filename = source.filename or "model.safetensors"
    if log is not None:
        log(f"downloading {source.location}@{source.revision}/{filename} into the Hugging Face cache")
    try:
        path = Path(hf_hub_download(source.location, filename, revision=source.revision))
    except Exception as exc:  # huggingface_hub raises its own errors for offline, 404, gated repos
        raise OSError(f"{source.location}@{source.revision}/{filename}: {exc}") from exc
    verify(path, source)
    return path


def missing_message(entry: ExtractorEntry, weights_home: Path, offline: bool, fetching: bool = False) -> str:
    """What to do when the weights are not there; ``fetching``: said to ``bench weights fetch`` itself, which
    is not suggested again."""
    folder = weights_folder(entry, weights_home)
    sources = "; ".join(source.describe() for source in entry.weights)
    wanted = next((file_name(s) for s in entry.weights if file_name(s)), None)
    where = f"{folder / wanted}" if wanted else f"{folder}/ (one weight file)"
    why = " (offline: no download attempted)" if offline else ""
    hub = next((source for source in entry.weights if source.kind == "hub" and source.filename), None)
    if hub is not None:  # a named hub model (its card in the entry's metadata)
        gated = entry.metadata.get("gated")
        revision = f" --revision {hub.revision}" if hub.revision else ""
        licence = entry.metadata.get("licence", "see the card")
        access = (f"Access is gated: sign in at https://huggingface.co/{hub.location}, accept its terms ({licence}) "
                  "and use a token (`hf auth login`); then download" if gated else f"Its licence: {licence}. Download")
        return (f"weights for extractor {entry.name!r} not found{why}. {access} them with `hf download "
                f"{hub.location} {hub.filename}{revision} --local-dir {folder}` (or put the file or the hub snapshot "
                f"folder there), or pass --weights FILE_OR_SNAPSHOT_FOLDER.")
    return (
        f"weights for extractor {entry.name!r} not found{why}. Get them from: {sources}. "
        f"Put the file at {where}" + ("" if fetching else f", run `bench weights fetch {entry.name}`")
        + ", or pass --weights PATH."
    )


def status(entry: ExtractorEntry, weights_home: Path) -> tuple[str, str]:
    """(status, detail) for ``bench weights list``: not needed / present (path) / missing (where from)."""
    if not entry.needs_weights:
        return "not needed", "random initialisation" if any(s.kind == "random" for s in entry.weights) else "loaded by the model's own library"
    try:
        found = _find_local(entry, weights_home)
    except (ChecksumError, MissingWeightsError) as exc:
        return "bad", str(exc)
    if found is not None:
        return "present", f"{found.path} ({found.origin})"
    return "missing", "; ".join(source.describe() for source in entry.weights)
