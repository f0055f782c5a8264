"""Feature extraction: images -> (N, dim) float32, batched, shard by shard into the feature cache."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import UnidentifiedImageError

from bench.cache import CachedFeatures, Claim, FeatureStore, feature_key, missing_units
from bench.core.errors import BadImageError, CacheError, ExtractorError, HemabenchError, UsageError
from bench.core.images import decode_rgb
from bench.core.record import now_utc
from bench.decode import EncodedFiles, collate_encoded, decode_batch, resolve_decode, with_skip_hint
from bench.distributed import World
from bench.precision import resolve_precision


@dataclass(frozen=True)
class ExtractionSettings:
    """How features are extracted and cached. None of these change the features beyond float rounding, and the
    cache key ignores them, except ``decode``: decoding on the GPU gives other pixels (within a few 8-bit levels)
    and is part of the key (``bench.runner.build_extractor``)."""

    cache_root: Path
    batch_size: int | None = None  # None: default_batch_size(device)
    num_workers: int | None = None  # None: auto_workers(device)
    device: str = "auto"
    shard_size: int = 1024
    skip_bad: bool = False  # leave unreadable images out (listed) instead of failing
    progress: bool = True
    decode: str = "cpu"  # cpu (PIL in the workers) | gpu (nvJPEG + resize on the device) | auto: bench.decode

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
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


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass when the user gives none: 256 on CUDA (an H100/H200 is busy from ~128 ViT-g/14
    images at 224 px; a smaller GPU that runs out of memory halves it, see ``_Forward``), 32 elsewhere (a CPU
    gains nothing from larger batches and a progress bar that moves is worth more)."""
    return 256 if device.type == "cuda" else 32


def auto_workers(device: torch.device) -> int:
    """DataLoader workers when the user gives none: decoding overlaps the forward pass in a worker.

    On CPU the model needs the cores too: one worker per two cores (at most 4). Measured on 2 cores with
    ViT-S/14 (docs/benchmarks.md), one worker vs none: +3.5 % img/s on PNGs, -0.3 % on JPEGs; decoding is
    ~2 % of a ViT-S forward there, more for small models and on GPUs. On CUDA every core but one (at most 16):
    PIL's decode and resize of PBC JPEGs was the limit of dinobloom-s on an H200 at 704 img/s with 14 workers
    (issue 12), and with ``--decode gpu`` the workers only read files, which costs little.
    """
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return max(1, min(16, cpus - 1))
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
                    raise with_skip_hint(exc) from None
                raise BadImageError(
                    f"cannot read image {path}: {exc}. Remove or replace the file, or pass --skip-bad-images "
                    "to leave it out (it is then listed in the result)"
                ) from None
            return torch.zeros(3, self.input_size, self.input_size), index, False


def from_worker(exc: Exception) -> Exception:
    """A harness error raised in a DataLoader worker reaches the main process with the worker's traceback in its
    message (torch's ExceptionWrapper re-raises ``type(exc)("Caught ... Original Traceback ...")``); the user needs
    the original one line, which names the file and the fix. Any other error is returned as it is."""
    text = str(exc)
    if not (text.startswith("Caught ") and "DataLoader worker" in text.split("\n", 1)[0]):
        return exc
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    original = text.rsplit(marker, 1)[-1].strip() if marker in text else text.strip().splitlines()[-1]
    return type(exc)(original)


@dataclass
class ExtractionStats:
    rows_extracted: int
    seconds: float
    resumed_from: int
    cached: bool
    batch_size: int | None = None
    num_workers: int | None = None
    attention: str | None = None  # sdpa (PyTorch) or xformers
    precision: str | None = None  # the resolved forward precision (bench.precision)
    forward_batch_size: int | None = None  # set when CUDA ran out of memory and the forward passes were split
    world_size: int = 1  # processes that shared the extraction (torchrun); recorded, never part of the key

    @property
    def images_per_second(self) -> float | None:
        return self.rows_extracted / self.seconds if self.rows_extracted and self.seconds > 0 else None

    def as_dict(self) -> dict:
        return {
            "cached": self.cached,
            "rows_extracted": self.rows_extracted,
            "resumed_from_row": self.resumed_from,  # rows found complete (several processes: not one prefix)
            "extraction_seconds": round(self.seconds, 3),
            "images_per_second": None if self.images_per_second is None else round(self.images_per_second, 2),
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "attention": self.attention,
            "precision": self.precision,
            **({"forward_batch_size": self.forward_batch_size} if self.forward_batch_size else {}),
            **({"world_size": self.world_size} if self.world_size > 1 else {}),
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


class _Forward:
    """The model's forward on a batch, split into halves when CUDA runs out of memory (the smaller size is kept
    for the rest of the run, and said once): a default batch that fills one GPU must not fail on a smaller one."""

    def __init__(self, model: torch.nn.Module, batch_size: int, log: Callable[[str], None]):
        self.model, self.size, self.log = model, batch_size, log

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        while True:
            try:
                return torch.cat([self.model(part) for part in images.split(self.size)])
            except torch.cuda.OutOfMemoryError:  # (decoding and the copy to the GPU need less than the forward)
                if self.size == 1:
                    raise ExtractorError("the GPU runs out of memory on a single image: use a GPU with more "
                                         "memory or --device cpu") from None
                self.size = max(1, self.size // 2)
                torch.cuda.empty_cache()
                self.log(f"out of GPU memory: forward passes of {self.size} images from now on (pass "
                         f"--batch-size {self.size} to start there)")


@dataclass
class _InFlight:
    """A batch whose features are on their way to the host (CUDA: a non-blocking copy into pinned memory that
    ``event`` marks done), so the GPU computes the next batch meanwhile; no synchronisation per batch."""

    features: torch.Tensor
    indices: torch.Tensor
    ok: torch.Tensor
    event: Any = None

    @classmethod
    def start(cls, out: torch.Tensor, indices: torch.Tensor, ok: torch.Tensor) -> "_InFlight":
        out = out.float()
        if out.device.type != "cuda":
            return cls(out.cpu(), indices, ok)  # CPU: the tensor itself; MPS and others: a blocking copy
        host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        stream = torch.cuda.current_stream(out.device)  # the stream of out's GPU (cuda:1 is not the current device)
        host.copy_(out, non_blocking=True)
        event = torch.cuda.Event()
        event.record(stream)
        return cls(host, indices, ok, event)

    def numpy(self) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()
        return self.features.numpy()


class _ClaimedBatches:
    """The loader's batch sampler: the batches of each unit (shard) this process claims, claimed one at a time as
    the loader asks for the next batch, in ``units`` order, skipping units another process holds or finished.
    ``claimed`` holds the units handed out and not yet written (oldest first); ``held``: the first unit's claim,
    taken already."""

    def __init__(self, store: FeatureStore, units: list[tuple[int, int]], batch_size: int, owner: dict, held=None):
        self.store, self.units, self.batch_size, self.owner, self.held = store, units, batch_size, owner, held
        self.claimed: deque = deque()

    def __iter__(self):
        for unit in self.units:
            claim, self.held = self.held or self.store.claim(unit, self.owner), None
            if claim is None:
                continue
            self.claimed.append(claim)
            for start in range(unit[0], unit[1], self.batch_size):
                yield list(range(start, min(start + self.batch_size, unit[1])))

    def release(self) -> None:
        while self.claimed:
            self.claimed.popleft().release()
        if self.held is not None:
            self.held.release()


def share_order(units: list, rank: int, size: int) -> list:
    """Rank ``rank``'s own share first (every ``size``-th unit from its rank on), then the others' from the end
    (the units their ranks reach last), which it takes only if nobody holds or finished them by then."""
    own = units[rank::size]
    others = [unit for i, unit in enumerate(units) if i % size != rank]
    return own + others[::-1]


@dataclass(frozen=True)
class _Batches:
    """How the rows of the shards this process claims become features on the host: the loader (decoding in its
    workers, or ``on_device``), the model's forward, the copy back (``overlap``: while the device computes the
    next batch), and the checks of what came back, before anything is cached."""

    dataset: Any  # ImageFiles, or EncodedFiles with on_device
    forward: _Forward
    dim: int
    batch_size: int
    num_workers: int
    device: torch.device
    on_device: Callable[[list, Sequence], tuple[torch.Tensor, torch.Tensor]] | None
    overlap: bool
    description: str
    precision: str

    def features(self, claims: _ClaimedBatches) -> Iterator[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
        """(features, row indices, ok) per batch of the claimed units, in the order the sampler handed them out."""
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=claims, num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, collate_fn=None if self.on_device is None else collate_encoded,
        )
        for batch in self._on_host(loader):
            yield self._checked(batch)

    def _on_host(self, loader) -> Iterator[_InFlight]:
        """The loader's batches through the model, each handed on once its copy to the host is under way (with
        ``overlap``: one batch later)."""
        in_flight = None
        for images, indices, ok in loader:
            if self.on_device is None:
                images = images.to(self.device, non_blocking=True)
            else:
                images, ok = self.on_device(images, [self.dataset.paths[int(i)] for i in indices])
            current = _InFlight.start(self.forward(images), indices, ok)
            if not self.overlap:
                yield current
                continue
            if in_flight is not None:
                yield in_flight  # the previous batch, while the device computes this one
            in_flight = current
        if in_flight is not None:
            yield in_flight

    def _checked(self, batch: _InFlight) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        out = batch.numpy()
        indices, ok = batch.indices, batch.ok.numpy()
        if out.shape != (len(indices), self.dim):
            raise ExtractorError(f"extractor returned features of shape {out.shape}, expected ({len(indices)}, "
                                 f"{self.dim}); its forward must map (N, 3, H, W) images to (N, dim) features")
        out[~ok] = 0.0
        if not np.isfinite(out).all():
            paths = [self.dataset.paths[int(i)] for i in indices]
            raise non_finite_error(self.description, self.forward.model, out, paths, self.precision)
        return out, indices, ok


class ShardWriter:
    """This process's passes over the shards it claims: the features of each batch are gathered (``pending``)
    until they fill the oldest open claim, then that shard is written and its claim released. The progress bar
    counts the rows extracted here (under torchrun also, every 2 s at most, the rows the others finished)."""

    def __init__(self, store: FeatureStore, batches: _Batches, world: World, bar, task, started: float):
        self.store, self.batches, self.bar, self.task, self.started = store, batches, bar, task, started
        self.owner = {"rank": world.rank, "world": world.size}
        self.distributed = world.distributed
        self.pending: list[np.ndarray] = []
        self.pending_bad: list[int] = []
        self.extracted = 0
        self.synced = 0.0

    def extract(self, units: list[tuple[int, int]], held: Claim | None = None) -> None:
        """Claim, extract and write each unit that no other process holds or finished (``held``: the first unit's
        claim, taken already)."""
        claims = _ClaimedBatches(self.store, units, self.batches.batch_size, self.owner, held)
        try:
            for out, indices, ok in self.batches.features(claims):
                self.add(out, indices, ok, claims.claimed)
        except HemabenchError as exc:
            plain = from_worker(exc)
            if plain is exc:
                raise
            raise plain from None
        finally:
            self.pending.clear()
            self.pending_bad.clear()
            claims.release()  # (all written, unless an error or a stop ends the pass)

    def add(self, out: np.ndarray, indices: torch.Tensor, ok: np.ndarray, claimed: deque) -> None:
        self.pending.append(out)
        self.pending_bad.extend(int(i) for i, good in zip(indices, ok) if not good)
        self.extracted += len(indices)
        rate = self.extracted / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=len(indices), rate=f"{rate:.1f}")
        claim = claimed[0]  # batches arrive in the order the sampler handed out their units
        if not (claim.start <= int(indices[0]) and int(indices[-1]) < claim.stop):  # a bug, never data
            raise RuntimeError(f"rows {int(indices[0])}-{int(indices[-1])} arrived for the shard of rows "
                               f"{claim.start}-{claim.stop - 1}")
        if sum(len(p) for p in self.pending) == claim.stop - claim.start:
            self._write(claimed)

    def _write(self, claimed: deque) -> None:
        self.store.write_shard(claimed[0].start, np.concatenate(self.pending), self.pending_bad)
        claimed.popleft().release()
        self.pending, self.pending_bad = [], []
        if self.distributed and time.perf_counter() - self.synced > 2:  # the other ranks' shards, too
            self.synced = time.perf_counter()
            self.bar.update(self.task, completed=self.store.rows_done())


def _unfinished(store: FeatureStore, n_rows: int, shard_size: int, description: str) -> str:
    """What a stop by the launcher says of the entry: its unfinished shards and who claimed them."""
    said = store.unfinished(n_rows, shard_size)
    return (f"Features of {description}: {len(said)} shard(s) unfinished: {'; '.join(said[:4])}"
            f"{' ...' if len(said) > 4 else ''}. The complete shards are kept: run the same command again, with "
            "any number of processes, to extract only the rest." if said else "")


def extract_to_store(
    model: torch.nn.Module,
    store: FeatureStore,
    dataset: ImageFiles | EncodedFiles,
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
    overlap: bool | None = None,
    on_device: Callable[[list, Sequence], tuple[torch.Tensor, torch.Tensor]] | None = None,
    world: World | None = None,
    finalise: bool = True,
) -> ExtractionStats:
    """Extract the shards of the entry that are missing and that no other process holds, then (``finalise``)
    wait for the shards other processes hold, extract any whose holder died, and finalise the entry.

    Any number of processes may run this on one entry at once (the ranks of a ``torchrun`` launch, or separate
    launches): each claims shards with a lock (:meth:`FeatureStore.claim`), ``world``'s rank first takes its own
    share (:func:`share_order`), and no shard is extracted twice. A shard's rows are cut into batches from its
    start, so its features do not depend on which process extracted it or how many there were.

    ``precision`` is a resolved value (:func:`bench.precision.resolve_precision`). ``overlap`` (default: on CUDA)
    hands a batch's features to the host while the device computes the next batch; on a CPU there is nothing
    to overlap, and an interrupted run then loses no finished batch. ``on_device`` (GPU decoding): ``dataset`` is a
    :class:`bench.decode.EncodedFiles` and ``on_device(encoded, paths)`` turns a batch of it into (images on the
    device, ok)."""
    overlap = device.type == "cuda" if overlap is None else overlap
    world = world or World()
    from bench.distributed import describing
    from bench.precision import forward_precision

    n_rows = len(dataset)
    problems: list[str] = []
    done_before = sum(s.stop - s.start for s in store.completed_shards(problems))  # checked against their checksums
    for problem in problems:
        log(problem)
    model = model.to(device)
    from extractors.attention import use_xformers, xformers_available

    attention = "xformers" if xformers_available(device) and use_xformers(model) else "sdpa"
    forward = _Forward(model, batch_size, log)
    batches = _Batches(dataset, forward, dim, batch_size, num_workers, device, on_device, overlap, description,
                       precision)
    t0 = time.perf_counter()
    store.describe(manifest)  # named from the start: an entry cut short is still identifiable
    try:
        with _progress(progress) as bar, torch.inference_mode(), forward_precision(precision, device), \
                describing(partial(_unfinished, store, n_rows, shard_size, description)):
            task = bar.add_task(description, total=n_rows, completed=done_before, rate="-")
            writer = ShardWriter(store, batches, world, bar, task, started=t0)
            units = missing_units(n_rows, shard_size, store.completed_shards(verify=False))
            own = units[world.rank::world.size]
            writer.extract(own)  # its own share first: the loader claims ahead (its prefetch), but only from it
            if len(own) < len(units):
                writer.extract(share_order(units, world.rank, world.size)[len(own):])  # then what others did not start
            while finalise:  # what others hold: wait for it, and take over what a process that died left
                units = missing_units(n_rows, shard_size, store.completed_shards(verify=False))
                if not units or store.is_complete():  # (complete: another launch finalised it, its shards are gone)
                    break
                for unit in units:  # one at a time, holding no other claim while waiting (two waiters never deadlock)
                    claim = store.claim(unit, writer.owner, wait=True, on_wait=lambda who: log(
                        f"waiting for rows {unit[0]}-{unit[1] - 1}: {who} is extracting them"))
                    if claim is not None:  # its holder died, or nobody had started it
                        writer.extract([unit], held=claim)
                time.sleep(0.05)  # (a unit that is written but not yet readable: look again, without spinning)
    except BaseException:  # failed or stopped: complete shards stay for a resume, an entry with none goes
        try:
            store.discard_if_empty()
        except OSError:
            pass  # the error that ended the extraction is the one to report
        raise
    seconds = time.perf_counter() - t0
    stats = ExtractionStats(writer.extracted, seconds, done_before, cached=False, batch_size=batch_size,
                            num_workers=num_workers, attention=attention, precision=precision,
                            forward_batch_size=forward.size if forward.size != batch_size else None,
                            world_size=world.size)
    if finalise:
        with store.lock(on_wait=lambda path: log(f"waiting for another process finalising {description} ({path})")):
            if not store.is_complete():  # (another launch may have finalised it meanwhile)
                store.finalise(n_rows, dim, {**manifest, "extraction": stats.as_dict()})
    return stats


def _dataset(entry, paths: Sequence[Path], settings: ExtractionSettings, target: torch.device):
    """The images to extract, and (GPU decoding) what turns a batch of them into images on the device."""
    if resolve_decode(settings.decode, target, entry.interpolation) == "gpu":
        if entry.task_transform is not None and getattr(entry.task_transform, "device_resize", None) is None:
            raise UsageError(f"--decode {settings.decode}: the task's preprocessing ({entry.task_transform.spec()}) "
                             "runs on PIL images, not on the device; use --decode cpu")
        on_device = partial(decode_batch, device=target, size=entry.input_size, mean=entry.mean, std=entry.std,
                            interpolation=entry.interpolation, skip_bad=settings.skip_bad,
                            pre_resize=getattr(entry.task_transform, "device_resize", None))
        return EncodedFiles(paths, settings.skip_bad), on_device
    return ImageFiles(paths, entry.transform(), entry.input_size, settings.skip_bad), None


def cached_features(
    entry,
    model: torch.nn.Module,
    fingerprint: dict,
    paths: Sequence[Path],
    content_sha256: str,
    settings: ExtractionSettings,
    log: Callable[[str], None] = print,
    world: World | None = None,
    finalise: bool = True,
) -> tuple[CachedFeatures | None, ExtractionStats]:
    """Features of ``paths`` (in that order) from the cache, extracting what is missing. A cache entry that
    fails its checks (:meth:`FeatureStore.load`) is named, evicted and extracted again.

    Not ``finalise``: help the process that will (another rank): extract the shards nobody holds, return
    (None, stats) without waiting for the rest."""
    key, payload = feature_key(fingerprint, content_sha256)
    store = FeatureStore(settings.cache_root, key)
    cached = _verified(store, log) if store.is_complete() else None
    target = pick_device(settings.device)
    precision = resolve_precision(entry.precision, target)  # resolved already by bench.runner; benchmarks call here
    stats = ExtractionStats(0, 0.0, 0, cached=True, precision=precision)
    if cached is None and store.is_complete():  # complete but damaged: the finalising process evicts it
        if not finalise:
            return None, stats
        with store.lock():
            cached = _verified(store, log, evict=True) if store.is_complete() else None
    if cached is None:
        dataset, on_device = _dataset(entry, paths, settings, target)
        stats = extract_to_store(
            model,
            store,
            dataset,
            dim=entry.dim,
            batch_size=settings.batch_size or default_batch_size(target),
            num_workers=auto_workers(target) if settings.num_workers is None else settings.num_workers,
            device=target,
            precision=precision,
            shard_size=settings.shard_size,
            manifest={"key_payload": payload, "paths_in_order": len(paths), "created": now_utc()},
            progress=settings.progress,
            description=f"{entry.name}",
            log=log,
            on_device=on_device,
            world=world,
            finalise=finalise,
        )
        if not finalise:
            return None, stats
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
        cause = (f"the model's weights are finite, so {precision} overflow is likely: run it with "
                 "--precision fp32")
    else:
        cause = ("the model's weights are finite: its forward produces them (a division by zero, a log of 0, or "
                 "an input it cannot handle); check it with `bench check-extractor`")
    shown = ", ".join(str(paths[i]) for i in rows[:5]) + (" ..." if len(rows) > 5 else "")
    return ExtractorError(f"extractor {extractor!r} returned NaN or inf features for {len(rows)} of {len(out)} images "
                          f"in a batch ({shown}); nothing was cached. Likely cause: {cause}")
