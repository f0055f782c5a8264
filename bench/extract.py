"""Feature extraction: images -> (N, dim) float32, batched, shard by shard into the feature cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import UnidentifiedImageError

from bench.cache import CachedFeatures, FeatureStore, feature_key
from bench.core.errors import BadImageError, CacheError, ExtractorError, UsageError
from bench.core.images import decode_rgb
from bench.core.record import now_utc


@dataclass(frozen=True)
class ExtractionSettings:
    """How features are extracted and cached; none of these change the features (the cache key ignores them)."""

    cache_root: Path
    batch_size: int = 32
    num_workers: int | None = None  # None: auto_workers(device)
    device: str = "auto"
    shard_size: int = 1024
    skip_bad: bool = False  # leave unreadable images out (listed) instead of failing
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise UsageError(f"--num-workers must be 0 or more, got {self.num_workers}")


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {requested}: CUDA is not available here; use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def auto_workers(device: torch.device) -> int:
    """DataLoader workers when the user gives none: decoding overlaps the forward pass in a worker.

    On CPU the model needs the cores too: one worker per two cores (at most 4). Measured on 2 cores with
    ViT-S/14 (docs/benchmarks.md), one worker vs none: +3.5 % img/s on PNGs, -0.3 % on JPEGs; decoding is
    ~2 % of a ViT-S forward there, more for small models and on GPUs. On CUDA up to 8.
    """
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return min(8, cpus)
    return min(4, max(1, cpus // 2))


class ImageFiles(torch.utils.data.Dataset):
    """Decode + transform image files; a bad file raises (naming it) or, with ``skip_bad``, yields a flag."""

    def __init__(self, paths: Sequence[Path], transform: Callable, input_size: int, skip_bad: bool):
        self.paths = list(paths)
        self.transform = transform
        self.input_size = input_size
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            tensor = self.transform(decode_rgb(path))  # one decoding rule: 16-bit, float, alpha (bench.core.images)
            return tensor, index, True
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if not self.skip_bad:
                if isinstance(exc, BadImageError):  # already names the file and the fix
                    raise BadImageError(f"{exc}; or pass --skip-bad-images to leave it out (it is then listed in "
                                        "the result)") from None
                raise BadImageError(
                    f"cannot read image {path}: {exc}. Remove or replace the file, or pass --skip-bad-images "
                    "to leave it out (it is then listed in the result)"
                ) from None
            return torch.zeros(3, self.input_size, self.input_size), index, False


@dataclass
class ExtractionStats:
    rows_extracted: int
    seconds: float
    resumed_from: int
    cached: bool
    batch_size: int | None = None
    num_workers: int | None = None
    attention: str | None = None  # sdpa (PyTorch) or xformers

    @property
    def images_per_second(self) -> float | None:
        return self.rows_extracted / self.seconds if self.rows_extracted and self.seconds > 0 else None

    def as_dict(self) -> dict:
        return {
            "cached": self.cached,
            "rows_extracted": self.rows_extracted,
            "resumed_from_row": self.resumed_from,
            "extraction_seconds": round(self.seconds, 3),
            "images_per_second": None if self.images_per_second is None else round(self.images_per_second, 2),
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "attention": self.attention,
        }


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=False)


def extract_to_store(
    model: torch.nn.Module,
    store: FeatureStore,
    dataset: ImageFiles,
    *,
    dim: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: str,
    shard_size: int,
    manifest: dict,
    progress: bool,
    description: str,
    log: Callable[[str], None] = print,
) -> ExtractionStats:
    """Extract the rows not yet in complete shards, then finalise the entry. Call with the store's lock held."""
    n_rows = len(dataset)
    batches_per_shard = max(1, -(-shard_size // batch_size))
    shard_rows = batches_per_shard * batch_size  # shards end on batch boundaries: a resume re-forms the same batches
    problems: list[str] = []
    done = store.completed_shards(problems)
    for problem in problems:
        log(problem)
    start = done[-1].stop if done else 0
    remaining = torch.utils.data.Subset(dataset, range(start, n_rows))
    loader = torch.utils.data.DataLoader(
        remaining,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    use_autocast = device.type == "cuda" and autocast_dtype is not None  # fp32 on CPU: bf16 is slower there
    model = model.to(device)
    from extractors.attention import use_xformers, xformers_available

    attention = "xformers" if xformers_available(device) and use_xformers(model) else "sdpa"
    pending: list[np.ndarray] = []
    pending_bad: list[int] = []
    shard_start = start
    t0 = time.perf_counter()
    extracted = 0
    with _progress(progress) as bar, torch.inference_mode():
        task = bar.add_task(description, total=n_rows, completed=start, rate="-")
        for images, indices, ok in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
                out = model(images)
            out = out.float().cpu().numpy()
            if out.shape != (len(indices), dim):
                raise ExtractorError(f"extractor returned features of shape {out.shape}, expected ({len(indices)}, {dim}); "
                                     "its forward must map (N, 3, H, W) images to (N, dim) features")
            out[~ok.numpy()] = 0.0
            if not np.isfinite(out).all():
                raise non_finite_error(description, model, out, [dataset.paths[int(i)] for i in indices], precision)
            pending.append(out)
            pending_bad.extend(int(i) for i, good in zip(indices, ok) if not good)
            extracted += len(indices)
            rate = extracted / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=len(indices), rate=f"{rate:.1f}")
            rows_pending = sum(len(p) for p in pending)
            if rows_pending >= shard_rows or shard_start + rows_pending == n_rows:
                store.write_shard(shard_start, np.concatenate(pending), pending_bad)
                shard_start += rows_pending
                pending, pending_bad = [], []
    seconds = time.perf_counter() - t0
    stats = ExtractionStats(
        extracted, seconds, start, cached=False, batch_size=batch_size, num_workers=num_workers, attention=attention
    )
    store.finalise(n_rows, dim, {**manifest, "extraction": stats.as_dict()})
    return stats


def cached_features(
    entry,
    model: torch.nn.Module,
    fingerprint: dict,
    paths: Sequence[Path],
    content_sha256: str,
    settings: ExtractionSettings,
    log: Callable[[str], None] = print,
) -> tuple[CachedFeatures, ExtractionStats]:
    """Features of ``paths`` (in that order) from the cache, extracting what is missing. A cache entry that
    fails its checks (:meth:`FeatureStore.load`) is named, evicted and extracted again."""
    key, payload = feature_key(fingerprint, content_sha256)
    store = FeatureStore(settings.cache_root, key)
    cached = _verified(store, log) if store.is_complete() else None
    stats = ExtractionStats(0, 0.0, 0, cached=True)
    if cached is None:
        on_wait = lambda path: log(f"waiting for another process extracting the same features (lock {path})")  # noqa: E731
        with store.lock(on_wait=on_wait):
            cached = _verified(store, log, evict=True) if store.is_complete() else None  # another process may have finished it
            if cached is None:
                dataset = ImageFiles(paths, entry.transform(), entry.input_size, settings.skip_bad)
                target = pick_device(settings.device)
                stats = extract_to_store(
                    model,
                    store,
                    dataset,
                    dim=entry.dim,
                    batch_size=settings.batch_size,
                    num_workers=auto_workers(target) if settings.num_workers is None else settings.num_workers,
                    device=target,
                    precision=entry.precision,
                    shard_size=settings.shard_size,
                    manifest={"key_payload": payload, "paths_in_order": len(paths), "created": now_utc()},
                    progress=settings.progress,
                    description=f"{entry.name}",
                    log=log,
                )
                cached = store.load()
    if cached.bad_rows and not settings.skip_bad:
        names = ", ".join(str(paths[i]) for i in cached.bad_rows[:5])
        raise BadImageError(
            f"{len(cached.bad_rows)} image(s) cannot be read: {names}. Remove or replace them, or pass "
            "--skip-bad-images to leave them out"
        )
    return cached, stats


def _verified(store: FeatureStore, log: Callable[[str], None], evict: bool = False) -> CachedFeatures | None:
    """The entry's features if they pass their checks; else None, after saying why and (``evict``: the caller
    holds the lock) removing the entry."""
    try:
        return store.load()
    except CacheError as exc:
        if evict:
            log(f"{exc}; evicted, extracting again")
            store.evict()
        return None


def non_finite_error(extractor: str, model: torch.nn.Module, out: np.ndarray, paths: list, precision: str) -> ExtractorError:
    """The refusal of NaN/inf features, naming the extractor, the images and the likely cause."""
    rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
    broken = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    broken += [name for name, b in model.named_buffers() if b.is_floating_point() and not torch.isfinite(b).all()]
    if broken:
        cause = (f"the model's weights hold NaN/inf ({', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}): "
                 "the weight file is damaged or was saved from a diverged run; use another file")
    elif precision in ("fp16", "bf16"):
        cause = (f"the model's weights are finite, so {precision} overflow is likely: run the extractor in fp32 "
                 "(its precision setting)")
    else:
        cause = ("the model's weights are finite: its forward produces them (a division by zero, a log of 0, or "
                 "an input it cannot handle); check it with `bench check-extractor`")
    shown = ", ".join(str(paths[i]) for i in rows[:5]) + (" ..." if len(rows) > 5 else "")
    return ExtractorError(f"extractor {extractor!r} returned NaN or inf features for {len(rows)} of {len(out)} images "
                          f"in a batch ({shown}); nothing was cached. Likely cause: {cause}")
