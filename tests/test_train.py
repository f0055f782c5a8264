"""The DinoBloom trainer: export format, resume, EMA, torchrun, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dinobloom_train.config import get_preset
from dinobloom_train.model import build_student_teacher, ema_update, teacher_export_state
from dinobloom_train.train import TrainError, Trainer
from extractors import get_extractor
from extractors.vit import ViTSpec
from tests.conftest import REPO, make_image_folder

KEYS_FILE = REPO.parent / "shared" / "design" / "checkpoint_keys.json"
SMALL = ["global_batch=8", "num_workers=0", "max_steps=6", "warmup_iters=2", "iters_per_epoch=3",
         "freeze_last_layer_iters=1", "warmup_teacher_temp_iters=2", "export_every=100", "checkpoint_every=2",
         "out_dim=256", "hidden_dim=64", "bottleneck_dim=32", "arch_overrides=[[\"depth\", 2], [\"embed_dim\", 48], [\"num_heads\", 2]]"]


@pytest.fixture
def images(tmp_path):
    return make_image_folder(tmp_path / "imgs", {"a": 8, "b": 8}, size=40)


def test_s_export_has_the_published_dinobloom_keys_and_loads_as_dinobloom_s(tmp_path):
    _, teacher = build_student_teacher(ViTSpec("vit_small_patch14_dinov2", 224), 65536, 2048, 256, seed=3)
    state = teacher_export_state(teacher)
    if KEYS_FILE.is_file():
        published = json.loads(KEYS_FILE.read_text())["dinobloom_s"]["teacher"]
        assert {k: list(v.shape) for k, v in state.items()} == published
    torch.save({"teacher": state}, tmp_path / "export.pth")
    model = get_extractor("dinobloom-s").build(weights=tmp_path / "export.pth")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), teacher.backbone(x)[:, 0], rtol=0, atol=0)


def test_ema_update_hand_case():
    teacher, student = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 2.0]]))
        student.weight.copy_(torch.tensor([[3.0, -2.0]]))
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.weight, torch.tensor([[1.2, 1.6]]))


def test_resume_takes_the_same_next_step(images, tmp_path):
    config = get_preset("tiny-cpu").override(SMALL)
    straight = Trainer(config, images, tmp_path / "a", log=lambda m: None).train(4)
    first = Trainer(config, images, tmp_path / "b", log=lambda m: None)
    first.train(2)
    resumed = Trainer(config, images, tmp_path / "b", log=lambda m: None)
    assert resumed.iteration == 2
    history = resumed.train(4)
    assert [r["loss"] for r in history[2:]] == [r["loss"] for r in straight[2:]]
    assert len({round(r["loss"], 6) for r in straight}) > 1  # the loss does move


def test_export_sidecar_and_trained_door(images, tmp_path):
    config = get_preset("tiny-cpu").override(SMALL)
    trainer = Trainer(config, images, tmp_path / "run", log=lambda m: None)
    trainer.train(1)
    export = trainer.export()
    entry = get_extractor(f"trained:{export}")
    assert entry.dim == 48 and entry.input_size == 56 and entry.metadata["training"]["iteration"] == 1
    model = entry.build(weights=export)
    x = torch.randn(2, 3, 56, 56)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), trainer.teacher.backbone(x)[:, 0], rtol=0, atol=0)


def test_bad_input(tmp_path, images):
    config = get_preset("tiny-cpu").override(SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="empty|no image|No image"):
        Trainer(config, tmp_path / "empty", tmp_path / "o1", log=lambda m: None)
    with pytest.raises(TrainError, match="fewer than one global batch"):
        Trainer(config.override(["global_batch=64"]), images, tmp_path / "o2", log=lambda m: None)
    Trainer(config, images, tmp_path / "o3", log=lambda m: None).train(2)
    other = config.override(["arch_overrides=[[\"depth\", 3], [\"embed_dim\", 48], [\"num_heads\", 2]]"])
    with pytest.raises(TrainError, match="another architecture"):
        Trainer(other, images, tmp_path / "o3", log=lambda m: None)


def test_two_process_torchrun_on_cpu(images, tmp_path):
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
            "-m", "dinobloom_train", "--preset", "tiny-cpu", "--data", str(images), "--out", str(tmp_path / "ddp"),
            "--max-steps", "2"] + [a for item in SMALL for a in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2] and log[0]["batch"] == 4  # 8 per step, 4 per rank
    assert (tmp_path / "ddp" / "exports" / "teacher_0000002.pth").is_file()
    assert (tmp_path / "ddp" / "exports" / "teacher_0000000.pth").is_file()  # the initialisation


def test_init_from_a_dinov2_hub_checkpoint(tmp_path):
    """Student and teacher start from a DINOv2 hub file (518-px grid), position embedding resampled once."""
    if not KEYS_FILE.is_file():
        pytest.skip(f"{KEYS_FILE} is not present here")
    from dinobloom_train.train import _load_init
    from tests.test_pretrained import write_format

    write_format("dinov2_vits14_hub", tmp_path / "dinov2_vits14_pretrain.pth")
    config = get_preset("s").override([f"init={tmp_path / 'dinov2_vits14_pretrain.pth'}"])
    state = _load_init(config)
    student, teacher = build_student_teacher(config.architecture, 256, 64, 32, init_state=state)
    assert student.backbone.vit.pos_embed.shape == (1, 257, 384)
    torch.testing.assert_close(student.backbone.vit.pos_embed, state["pos_embed"], rtol=0, atol=0)
    torch.testing.assert_close(teacher.backbone.vit.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
