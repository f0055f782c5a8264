"""The DinoBloom training loop: DINO + iBOT + KoLeo, EMA teacher, AdamW groups, exports, resume, torchrun.

One iteration (DINOv2's ``forward_backward`` with two global crops and no local crops):
teacher (no grad) -> CLS and masked-patch logits -> Sinkhorn-Knopp targets; student on the same crops with
iBOT masks -> DINO loss (crops swapped), iBOT masked-patch loss, KoLeo on each crop's CLS; backward;
per-module gradient clipping; AdamW step with the scheduled lr/wd (last layer frozen for the first epoch,
patch embedding at 0.2 x lr); EMA update of the teacher.

Reproducible resume: the order of images and every sample's augmentation and mask draw are functions of
(seed, position in the stream of samples), so a run resumed from a checkpoint takes exactly the same next step
as one that never stopped. Multi-process runs (``torchrun``) use DDP (gloo on CPU, nccl on GPU); each rank
takes its slice of every global batch.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, cast

import numpy as np
import torch
from torch import nn

from bench.core.errors import HemabenchError, NotFoundError, TrainError, WeightsError
from bench.core.files import atomic_write, atomic_write_bytes, atomic_write_json
from dinobloom_train.config import TrainConfig
from dinobloom_train.model import build_student_teacher, ema_update, param_groups, teacher_export_state

CHECKPOINT = "checkpoint.pth"


def _sample_seed(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def _step_seed(seed: int, iteration: int, rank: int) -> int:
    """The seed of the model's own randomness (the student's stochastic depth) in one step on one rank."""
    return int(np.random.SeedSequence([seed, iteration, rank, 1]).generate_state(1)[0])


class SampleStream(torch.utils.data.Sampler):
    """Positions ``start, start+1, ...`` of an endless stream of (image index, sample seed); epoch e of the
    stream is a permutation of the images drawn from (seed, e). Rank r of w takes positions p with p % w == r
    inside each global batch, i.e. a contiguous slice per rank."""

    def __init__(self, n_images: int, seed: int, start: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n_images, seed, start, rank, world

    def item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(order[offset]), _sample_seed(self.seed, position)

    def __iter__(self):
        position = self.start + self.rank
        while True:
            yield self.item(position)
            position += self.world


class SeededImages(torch.utils.data.Dataset):
    """``dataset[(index, sample_seed)]``: the augmentation runs under that seed (torch and ``random``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, item):
        index, sample_seed = item
        torch.manual_seed(sample_seed)
        random.seed(sample_seed)
        try:
            return self.dataset[index], sample_seed
        except HemabenchError as exc:  # an unreadable image: passed on as data, raised by the trainer as it is
            return exc, sample_seed  # (raised in a loader worker, it would arrive as the text of a traceback)

    def __len__(self):
        return len(self.dataset)


def loader_workers(requested: int, device: torch.device) -> int:
    """DataLoader workers of one training process: ``requested`` when >= 0; else, on CUDA, the CPU cores this
    process may use shared among the processes of the node (torchrun's LOCAL_WORLD_SIZE), all but one of
    them: the PIL augmentations of two 224-px crops per image are the limit of a ViT-S step on an H200 (768 img/s
    with 14 workers against 37 with none, docs/benchmarks.md); on a CPU, 2 (the model needs the cores)."""
    if requested >= 0:
        return requested
    if device.type != "cuda":
        return 2
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, per_process - 1)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the group (nccl on GPUs, gloo on CPU) as ``bench run`` does
    (:func:`bench.distributed.init_world`), the GPU of LOCAL_RANK on CUDA."""
    from bench.distributed import init_world

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = init_world(device, cpu_messages=False)
    if device.startswith("cuda"):
        return Distributed(world.rank, world.size, torch.device("cuda", world.local_rank))
    return Distributed(world.rank, world.size, torch.device(device))


INIT_FIX = ("pass a DINOv2 or DinoBloom checkpoint of this architecture with --set init=PATH, or start from random "
            "weights with --set init=random")


def _load_init(config: TrainConfig) -> dict | None:
    """The timm-format backbone state of ``config.init``, checked against the architecture: every way the file
    can be wrong (missing, truncated, a refused pickle, other keys or shapes) is a one-line error naming it."""
    if config.init == "random":
        return None
    from extractors.dinov2 import unwrap_dinov2
    from extractors.weights import read_state_dict, state_dict_mismatches

    path = Path(config.init).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise NotFoundError(f"init checkpoint {path} {what}: {INIT_FIX}")
    container = read_state_dict(path)  # a WeightsError naming the file when truncated, damaged or refused
    stored = container
    if isinstance(container, dict):  # where unwrap_dinov2 looks, in its order
        stored = container.get("teacher", container.get("state_dict", container.get("model", container)))
    if not (isinstance(stored, dict) and stored
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in stored.items())):
        raise WeightsError(f"init checkpoint {path} does not hold a state dict of tensors (a DINOv2 hub or timm file, "
                           f"or DinoBloom's {{'teacher': ...}}): {INIT_FIX}")
    pos_embed = stored.get("pos_embed", stored.get("backbone.pos_embed"))
    if pos_embed is not None and pos_embed.ndim != 3:
        raise WeightsError(f"init checkpoint {path}: pos_embed has shape {tuple(pos_embed.shape)}, not (1, tokens, "
                           f"dim): {INIT_FIX}")
    with torch.device("meta"):  # only its names, shapes, grid and prefix tokens are read: no memory, no init
        vit = config.architecture.create()
    try:
        state = unwrap_dinov2(container, str(path), vit)
    except WeightsError as exc:
        message = str(exc) if str(path) in str(exc) else f"init checkpoint {path}: {exc}"
        raise WeightsError(f"{message}; {INIT_FIX}") from exc
    problems = state_dict_mismatches(vit.state_dict(), state, shown=5)
    if problems:
        raise WeightsError(f"init checkpoint {path} does not fit {config.timm_name} {list(config.arch_overrides)} "
                           f"({'; '.join(problems)}): {INIT_FIX}")
    return state


def normalized_entropy(probs: torch.Tensor) -> float:
    """Mean row entropy of (N, K) distributions divided by log K: 1.0 = uniform over all K prototypes."""
    probs = probs.detach().float()
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(dim=-1).mean()
    return float(entropy / math.log(probs.shape[-1]))


class CollapseMonitor:
    """Warns once when the DINO head has collapsed to uniform outputs: the student's mean softmax entropy stayed
    above ``threshold`` x log K over the last ``window`` steps after the lr warm-up. The DINO loss then sits at
    log K and gives the backbone no signal (seen from random init at small batch; DinoBloom itself always
    starts from a DINOv2 checkpoint)."""

    def __init__(self, after: int, window: int = 100, threshold: float = 0.995):
        self.after, self.window, self.threshold = after, window, threshold
        self.recent: deque[float] = deque(maxlen=window)
        self.warned = False

    def update(self, record: dict) -> str | None:
        self.recent.append(record["dino_student_entropy"])
        if self.warned or record["iteration"] < self.after + self.window or len(self.recent) < self.window:
            return None
        if min(self.recent) < self.threshold:
            return None
        self.warned = True
        return (f"warning: at iteration {record['iteration']} the DINO head's outputs have been uniform for "
                f"{self.window} steps (student entropy >= {self.threshold:.1%} of log K; DINO loss "
                f"{record['dino']:.3f}): the DINO loss gives no learning signal. DinoBloom starts from a DINOv2 "
                "checkpoint (--set init=PATH); from random init use a larger global_batch, fewer prototypes "
                "(out_dim) or a higher base_lr (see docs/training.md)")


class Trainer:
    def __init__(self, config: TrainConfig, data: str | Path, out: str | Path, dist: Distributed | None = None,
                 log: Callable[[str], None] = print):
        from dinobloom_train.data import DinoBloomAugmentation, ImageListDataset, list_images
        from dinobloom_train.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from dinobloom_train.schedules import Schedules

        self.config, self.out, self.dist, self.log = config, Path(out), dist or Distributed(), log
        if self.out.exists() and not self.out.is_dir():
            raise TrainError(f"--out {self.out} is a file: name a folder for the run (checkpoint, log, exports)")
        self.out.mkdir(parents=True, exist_ok=True)
        self.paths = list_images(data)
        if len(self.paths) < config.global_batch:
            raise TrainError(
                f"{data} holds {len(self.paths)} images, fewer than one global batch of {config.global_batch}; "
                "add images or lower global_batch (--set global_batch=N)"
            )
        if config.global_batch % self.dist.world:
            raise TrainError(f"global_batch {config.global_batch} is not divisible by {self.dist.world} processes")
        self.batch = config.global_batch // self.dist.world
        augmentation = DinoBloomAugmentation(
            global_size=config.img_size, global_scale=(config.global_scale_min, config.global_scale_max),
            defer_colour=config.augment_on == "gpu",
        )
        # augment_on=gpu: the workers crop and draw, each step applies the colour half to the batch on the device
        self.device_colour = augmentation.device_colour() if augmentation.defer_colour else None
        self.images = SeededImages(ImageListDataset(self.paths, augmentation))
        self.student, self.teacher = build_student_teacher(
            config.architecture, config.out_dim, config.hidden_dim, config.bottleneck_dim, _load_init(config),
            config.seed, config.drop_path_rate,
        )
        self.student.to(self.dist.device)
        self.teacher.to(self.dist.device)
        self.model = self.student
        if self.dist.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.student, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None
            )
        self.groups = param_groups(self.student, config.patch_embed_lr_mult)
        self.optimizer = torch.optim.AdamW(self.groups, lr=0.0, betas=tuple(config.adamw_betas))
        # fp16 autocast on CUDA needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler("cuda",
                                           enabled=self.dist.device.type == "cuda" and config.precision == "fp16")
        self.schedules = Schedules(
            total_iters=config.max_steps, global_batch=config.global_batch, iters_per_epoch=config.iters_per_epoch,
            base_lr=config.base_lr, min_lr=config.min_lr, warmup_iters=config.warmup_iters,
            weight_decay=config.weight_decay, weight_decay_end=config.weight_decay_end,
            momentum_teacher=config.momentum_teacher, final_momentum_teacher=config.momentum_teacher_end,
            warmup_teacher_temp=config.warmup_teacher_temp, teacher_temp=config.teacher_temp,
            warmup_teacher_temp_iters=config.warmup_teacher_temp_iters,
            freeze_last_layer_iters=config.freeze_last_layer_iters,
        )
        self.dino_loss = DINOLoss(config.out_dim, config.student_temp)
        self.ibot_loss = IBOTPatchLoss(config.out_dim, config.student_temp)
        self.koleo = KoLeoLoss()
        grid = config.img_size // self.student.backbone.vit.patch_embed.patch_size[0]
        self.grid = (grid, grid)
        self.iteration = 0
        self.history: list[dict] = []
        self._resume_if_possible()
        if self.dist.main and (self.history or (self.out / "log.jsonl").exists()):
            # the log says what the checkpoint holds: steps a killed run took after its last checkpoint (taken again
            # now) and a half-written last line are dropped
            atomic_write_bytes(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.history).encode())

    # -- state ------------------------------------------------------------------------------------------------
    def _resume_if_possible(self) -> None:
        """Resume from ``checkpoint.pth`` when there is one. It is written atomically (a killed run leaves the
        previous checkpoint whole, and at most a temporary file, removed here); a file that cannot be read or does
        not fit this run is a TrainError naming it, never a traceback."""
        path = self.out / CHECKPOINT
        if self.dist.main:
            stale = sorted(self.out.glob(f".{CHECKPOINT}.*.tmp")) + sorted(self.out.glob("exports/.teacher_*.tmp"))
            for leftover in stale:
                leftover.unlink(missing_ok=True)
            if stale:
                self.log(f"removed {len(stale)} half-written file(s) of a run that was killed while saving: "
                         + ", ".join(p.name for p in stale))
        if not path.exists():
            return
        fix = f"start afresh with another --out folder, or delete {path} to restart this run from iteration 0"
        if not path.is_file():
            raise TrainError(f"{path} is not a file: {fix}")
        state = self._read_checkpoint(path, fix)
        arch_keys = ("timm_name", "img_size", "arch_overrides", "out_dim", "hidden_dim", "bottleneck_dim")
        if any(state["config"].get(k) != self.config.as_dict()[k] for k in arch_keys):
            raise TrainError(
                f"{path} is a checkpoint of another architecture ({state['config'].get('timm_name')}, "
                f"{state['config'].get('arch_overrides')}); use another --out folder"
            )
        from extractors.weights import state_dict_mismatches

        for name, module in (("student", self.student), ("teacher", self.teacher)):
            problems = state_dict_mismatches(module.state_dict(), state[name], shown=5)
            if problems:
                raise TrainError(f"{path}: its {name} does not fit this run's model ({'; '.join(problems)}); {fix}")
        try:
            self.student.load_state_dict(state["student"], strict=True)
            self.teacher.load_state_dict(state["teacher"], strict=True)
        except RuntimeError as exc:
            raise TrainError(f"{path} does not fit this run's model: {' '.join(str(exc).split())}; {fix}") from exc
        self._load_optimizer(state["optimizer"], path, fix)
        self.iteration = int(state["iteration"])
        self.history = list(state.get("history", []))
        saved, current = state["config"], self.config.as_dict()
        changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in current.items() if k in saved and saved[k] != v]
        self.log(f"resumed from {path} at iteration {self.iteration}"
                 + (f"; settings changed since it was written: {', '.join(changed)}" if changed else ""))

    def _read_checkpoint(self, path: Path, fix: str) -> dict:
        from extractors.weights import READ_ERRORS, load_error_reason

        try:
            state = torch.load(path, map_location=self.dist.device, weights_only=True)
        except READ_ERRORS as exc:
            raise TrainError(f"cannot read checkpoint {path} ({load_error_reason(exc)}): it is truncated or damaged; "
                             f"{fix}") from exc
        except Exception as exc:  # pickle.UnpicklingError: weights_only=True refuses it
            raise TrainError(f"refusing to load checkpoint {path} ({load_error_reason(exc)}): this trainer writes only "
                             f"tensors and plain values, so the file is damaged or was not written by it; "
                             f"{fix}") from exc
        expected = {"student": dict, "teacher": dict, "optimizer": dict, "iteration": int, "config": dict,
                    "history": list}
        if not isinstance(state, dict):
            raise TrainError(f"{path} holds a {type(state).__name__}, not a checkpoint of this trainer; {fix}")
        wrong = [k for k, kind in expected.items()
                 if not isinstance(state.get(k, [] if k == "history" else None), kind)]
        if wrong or isinstance(state["iteration"], bool) or state["iteration"] < 0:
            keys = ", ".join(wrong or ["iteration"])
            raise TrainError(f"{path} is not a checkpoint of this trainer ({keys}: missing or of the wrong type); "
                             f"{fix}")
        return state

    def _load_optimizer(self, saved: dict, path: Path, fix: str) -> None:
        stale = f"it was written by another version of the trainer or is damaged: {fix}"
        try:
            self.optimizer.load_state_dict(saved)
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainError(f"{path}: its optimizer state does not fit this trainer's parameter groups "
                             f"({type(exc).__name__}: {exc}); {stale}") from exc
        names = {id(p): n for n, p in self.student.named_parameters()}
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                for key, value in self.optimizer.state.get(parameter, {}).items():
                    if key != "step" and isinstance(value, torch.Tensor) and value.shape != parameter.shape:
                        raise TrainError(f"{path}: the optimizer's {key} of {names[id(parameter)]} has shape "
                                         f"{tuple(value.shape)}, the parameter {tuple(parameter.shape)}; {stale}")

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT
        state = {"student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
                 "config": self.config.as_dict(), "history": self.history}
        atomic_write(path, lambda fh: torch.save(state, fh))
        return path

    def export(self) -> Path:
        """``exports/teacher_<iteration>.pth`` in DinoBloom's format, and its sidecar for ``trained:``."""
        from extractors.trained import SIDECAR_FORMAT, sidecar_path

        path = self.out / "exports" / f"teacher_{self.iteration:07d}.pth"
        state = {"teacher": teacher_export_state(self.teacher)}
        atomic_write(path, lambda fh: torch.save(state, fh))
        atomic_write_json(sidecar_path(path), {
            "format": SIDECAR_FORMAT, "architecture": self.config.architecture.as_dict(), "preset": self.config.preset,
            "iteration": self.iteration, "run": str(self.out), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": self.config.as_dict(), "warnings": [r["warning"] for r in self.history if "warning" in r],
        })
        return path

    # -- one step -----------------------------------------------------------------------------------------------
    def _batches(self):
        from dinobloom_train.data import collate_crops
        from dinobloom_train.masking import BlockMaskGenerator

        generator = BlockMaskGenerator(self.grid, max_num_patches=int(0.5 * self.grid[0] * self.grid[1]))

        def collate(samples):
            images, seeds = zip(*samples)
            failed = [image for image in images if isinstance(image, HemabenchError)]
            if failed:
                return {"error": failed[0]}
            # the mask draw: a function of the batch's first sample only, whichever worker collates it
            return collate_crops(list(images), generator, self.config.mask_probability,
                                 (self.config.mask_ratio_min, self.config.mask_ratio_max), self.grid, seed=seeds[0])

        sampler = SampleStream(len(self.paths), self.config.seed, self.iteration * self.config.global_batch,
                               self.dist.rank, self.dist.world)
        workers = loader_workers(self.config.num_workers, self.dist.device)
        loader = torch.utils.data.DataLoader(
            self.images, batch_size=self.batch, sampler=sampler, collate_fn=collate,
            num_workers=workers, pin_memory=self.dist.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        return iter(loader)

    def step(self, batch: dict) -> dict:
        if "error" in batch:  # an image of the batch could not be read (BadImageError naming it)
            raise batch["error"]
        config, device = self.config, self.dist.device
        values = self.schedules.at(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = (values["last_layer_lr"] if group["is_last_layer"] else values["lr"]) * group["lr_multiplier"]
            group["weight_decay"] = values["wd"] * group["wd_multiplier"]
        torch.manual_seed(_step_seed(config.seed, self.iteration, self.dist.rank))  # drop path: exact on resume
        crops = batch["global_crops"].to(device, non_blocking=True)
        if "colour_params" in batch:  # augment_on=gpu: uint8 crops, their colour drawn in the worker (no RNG here)
            assert self.device_colour is not None  # (made for augment_on=gpu)
            crops = self.device_colour(crops, batch["colour_params"])
        masks = batch["masks"].to(device, non_blocking=True)
        n = crops.shape[0] // 2
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        use_amp = device.type == "cuda" and amp is not None
        with torch.autocast(device.type, dtype=amp, enabled=use_amp):
            with torch.no_grad():
                t_tokens = self.teacher.backbone(crops)
                t_cls = self.teacher.dino_head(t_tokens[:, 0])
                t_patch = self.teacher.ibot_head(t_tokens[:, self.teacher.backbone.vit.num_prefix_tokens :][masks])
                t_cls_probs = self.dino_loss.sinkhorn_knopp_teacher(t_cls, values["teacher_temp"])
                # called on every rank, even with no masked patch here: Sinkhorn-Knopp all-reduces across ranks
                t_patch_probs = self.ibot_loss.sinkhorn_knopp_teacher(t_patch, values["teacher_temp"])
            s_cls, s_cls_logits, s_patch_logits = self.model(crops, masks)
            dino = self.dino_loss(list(s_cls_logits.chunk(2)), list(t_cls_probs.chunk(2)))
            ibot = self.ibot_loss.forward_masked(s_patch_logits, t_patch_probs, masks, batch.get("masks_weight"))
            # (a sum() of tensors is typed "int | Tensor": its start is 0)
            koleo = cast(torch.Tensor, sum(self.koleo(part) for part in s_cls.chunk(2)))
            loss = config.dino_weight * dino + config.ibot_weight * ibot + config.koleo_weight * koleo
        loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            raise TrainError(f"loss is {loss_value.item()} at iteration {self.iteration}; lower base_lr or check the "
                             "data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norms = [nn.utils.clip_grad_norm_(module.parameters(), config.clip_grad)
                 for module in (self.student.backbone, self.student.dino_head, self.student.ibot_head)]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        ema_update(self.teacher, self.student, values["momentum"])
        self.iteration += 1
        record = {"iteration": self.iteration, "loss": loss.item(), "dino": dino.item(), "ibot": ibot.item(),
                  "koleo": koleo.item(), "lr": values["lr"], "wd": values["wd"], "momentum": values["momentum"],
                  "teacher_temp": values["teacher_temp"], "grad_norm_backbone": float(norms[0]), "batch": n,
                  "dino_teacher_entropy": normalized_entropy(t_cls_probs),
                  "dino_student_entropy": normalized_entropy(torch.softmax(
                      s_cls_logits.detach().float() / config.student_temp, dim=-1))}
        return record

    # -- the loop -------------------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None, on_export: Callable[[Path], None] | None = None) -> list[dict]:
        stop = min(max_steps or self.config.max_steps, self.config.max_steps)
        if self.iteration == 0 and self.dist.main:  # the curve starts at the initialisation (random or DINOv2)
            path = self.export()
            if on_export is not None:
                on_export(path)
        batches = self._batches()
        monitor = CollapseMonitor(after=self.config.warmup_iters + self.config.freeze_last_layer_iters)
        t0 = time.perf_counter()
        while self.iteration < stop:
            record = self.step(next(batches))
            record["seconds"] = round(time.perf_counter() - t0, 3)
            self.history.append(record)
            warning = monitor.update(record)
            if warning is not None:
                record["warning"] = warning
            if self.dist.main:
                if warning is not None:
                    self.log(warning)
                with open(self.out / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if self.iteration % self.config.log_every == 0 or self.iteration == 1:
                    self.log(f"it {self.iteration}/{stop} loss {record['loss']:.4f} (dino {record['dino']:.4f} "
                             f"ibot {record['ibot']:.4f} koleo {record['koleo']:.4f}) lr {record['lr']:.2e} "
                             f"entropy/logK teacher {record['dino_teacher_entropy']:.3f} "
                             f"student {record['dino_student_entropy']:.3f}")
                if self.iteration % self.config.checkpoint_every == 0 or self.iteration == stop:
                    self.save_checkpoint()
                if self.iteration % self.config.export_every == 0 or self.iteration == stop:
                    path = self.export()
                    if on_export is not None:
                        on_export(path)
        return self.history


def main_cli(preset: str, data: str, out: str, overrides: list[str], max_steps: int | None,
             log=print, on_export=None) -> Trainer:
    """Entry point of ``bench train`` and of ``torchrun -m dinobloom_train``."""
    from dinobloom_train.config import get_preset

    config = get_preset(preset).override(overrides)
    if max_steps is not None:
        config = config.override([f"max_steps={max(max_steps, 1)}"]) if max_steps > config.max_steps else config
    dist = init_distributed()
    trainer = Trainer(config, data, out, dist, log if dist.main else (lambda m: None))
    if config.init == "random" and config.preset != "tiny-cpu" and dist.main:
        log(f"note: preset {config.preset!r} starts from random weights. DinoBloom fine-tunes a DINOv2 checkpoint "
            "with these hyperparameters (base_lr 2e-4, LayerScale weights from the checkpoint); pass "
            "--set init=PATH to do the same. From scratch, expect a long phase where the DINO loss stays at log K.")
    trainer.train(max_steps, on_export if dist.main else None)
    if dist.world > 1:
        torch.distributed.barrier()
    return trainer

