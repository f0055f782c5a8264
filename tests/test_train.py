"""The DinoBloom trainer: export format, resume, EMA, torchrun, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dinobloom_train.config import get_preset
from dinobloom_train.model import build_student_teacher, ema_update, teacher_export_state
from dinobloom_train.train import Trainer, TrainError
from extractors import get_extractor
from extractors.vit import ViTSpec
from tests.conftest import KEYS_FILE, REPO, make_image_folder

SMALL = ["global_batch=8", "num_workers=0", "max_steps=6", "warmup_iters=2", "iters_per_epoch=3",
         "freeze_last_layer_iters=1", "warmup_teacher_temp_iters=2", "export_every=100", "checkpoint_every=2",
         "out_dim=256", "hidden_dim=64", "bottleneck_dim=32", "arch_overrides=[[\"depth\", 2], [\"embed_dim\", 48], [\"num_heads\", 2]]"]


@pytest.fixture
def images(tmp_path):
    return make_image_folder(tmp_path / "imgs", {"a": 8, "b": 8}, size=40)


def test_s_export_has_the_published_dinobloom_keys_and_loads_as_dinobloom_s(tmp_path):
    _, teacher = build_student_teacher(ViTSpec("vit_small_patch14_dinov2", 224), 65536, 2048, 256, seed=3)
    state = teacher_export_state(teacher)
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
    config = get_preset("tiny-cpu").override(SMALL + ["drop_path_rate=0.3", "num_workers=1"])  # drop-path draws in the main process
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
    assert entry.name == "run@1"  # the run's name and the iteration, however the path was spelled
    import os

    os.chdir(export.parent)
    try:
        assert get_extractor(f"trained:{export.name}").name == "run@1"
    finally:
        os.chdir(tmp_path)
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
            "-m", "bench", "train", "--preset", "tiny-cpu", "--data", str(images), "--out", str(tmp_path / "ddp"),
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
    from dinobloom_train.train import _load_init
    from tests.test_pretrained import write_format

    write_format("dinov2_vits14_hub", tmp_path / "dinov2_vits14_pretrain.pth")
    config = get_preset("s").override([f"init={tmp_path / 'dinov2_vits14_pretrain.pth'}"])
    state = _load_init(config)
    student, teacher = build_student_teacher(config.architecture, 256, 64, 32, init_state=state)
    assert student.backbone.vit.pos_embed.shape == (1, 257, 384)
    torch.testing.assert_close(student.backbone.vit.pos_embed, state["pos_embed"], rtol=0, atol=0)
    torch.testing.assert_close(teacher.backbone.vit.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


def test_student_drop_path_is_uniform_and_the_teacher_has_none():
    from timm.layers import DropPath

    student, teacher = build_student_teacher(ViTSpec("vit_small_patch14_dinov2", 28, (("depth", 3),)), 64, 32, 16,
                                             drop_path_rate=0.3)
    rates = [getattr(b, n).drop_prob for b in student.backbone.vit.blocks for n in ("drop_path1", "drop_path2")]
    assert rates == [0.3] * 6 and all(isinstance(getattr(b, n), DropPath) for b in student.backbone.vit.blocks
                                      for n in ("drop_path1", "drop_path2"))
    assert not any(isinstance(m, DropPath) for m in teacher.modules())
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert not torch.equal(student.backbone(x), student.backbone(x))  # stochastic in training mode
        torch.testing.assert_close(teacher.backbone(x), teacher.backbone(x), rtol=0, atol=0)
        student.eval()
        torch.testing.assert_close(student.backbone(x), teacher.backbone(x), rtol=0, atol=0)  # same weights
    with pytest.raises(ValueError, match="drop_path_rate"):
        build_student_teacher(ViTSpec("vit_small_patch14_dinov2", 28, (("depth", 1),)), 8, 8, 8, drop_path_rate=1.0)


def test_prototype_norms_are_trained_after_the_frozen_epoch(images, tmp_path):
    """DINOv2 trains the weight-norm gain ``last_layer.weight_g`` (no norm_last_layer); frozen with the last layer
    during the first epoch (freeze_last_layer_iters=1 here), with weight decay."""
    trainer = Trainer(get_preset("tiny-cpu").override(SMALL), images, tmp_path / "run", log=lambda m: None)
    group = next(g for g in trainer.optimizer.param_groups
                 if any(p is trainer.student.dino_head.last_layer.weight_g for p in g["params"]))
    assert group["is_last_layer"] and group["wd_multiplier"] == 1.0
    trainer.train(1)
    assert torch.equal(trainer.student.dino_head.last_layer.weight_g, torch.ones(256, 1))  # frozen at iteration 0
    trainer.train(3)
    for model in (trainer.student, trainer.teacher):
        for head in (model.dino_head, model.ibot_head):
            assert not torch.equal(head.last_layer.weight_g, torch.ones(256, 1))


def test_normalized_entropy_and_the_collapse_warning():
    from dinobloom_train.train import CollapseMonitor, normalized_entropy

    assert normalized_entropy(torch.full((3, 8), 1 / 8)) == pytest.approx(1.0)
    assert normalized_entropy(torch.eye(4)) == pytest.approx(0.0, abs=1e-6)
    assert normalized_entropy(torch.tensor([[0.5, 0.5, 0.0, 0.0]])) == pytest.approx(0.5)  # log 2 / log 4

    def run(entropies, after=5, window=4):
        monitor = CollapseMonitor(after=after, window=window, threshold=0.99)
        return [monitor.update({"iteration": i + 1, "dino_student_entropy": e, "dino": 1.0})
                for i, e in enumerate(entropies)]

    warnings = run([1.0] * 20)
    assert [i + 1 for i, w in enumerate(warnings) if w] == [9]  # once, after warm-up + a full window
    assert "uniform" in warnings[8] and "init=PATH" in warnings[8]
    assert not any(run([1.0] * 6 + [0.9] + [1.0] * 3))  # every full window dipped below the threshold
    assert not any(run([0.95] * 20))


def test_weight_decay_groups_follow_dinov2():
    """dinov2/utils/param_groups.py: no decay for '.bias', 'norm', 'gamma'; tokens and pos_embed decay;
    patch_embed at 0.2 x lr; last_layer flagged."""
    from dinobloom_train.model import param_groups

    student, _ = build_student_teacher(ViTSpec("vit_small_patch14_dinov2", 28, (("depth", 2),)), 16, 8, 8)
    names = {id(p): n for n, p in student.named_parameters()}
    seen = {}
    for group in param_groups(student, 0.2):
        for parameter in group["params"]:
            seen[names[id(parameter)]] = (group["wd_multiplier"], group["lr_multiplier"], group["is_last_layer"])
    assert set(seen) == set(names.values())
    assert seen["backbone.vit.pos_embed"] == (1.0, 1.0, False)
    assert seen["backbone.vit.cls_token"] == (1.0, 1.0, False)
    assert seen["backbone.mask_token"] == (1.0, 1.0, False)
    assert seen["backbone.vit.patch_embed.proj.weight"] == (1.0, 0.2, False)
    assert seen["backbone.vit.patch_embed.proj.bias"] == (0.0, 0.2, False)
    assert seen["backbone.vit.blocks.0.ls1.gamma"][0] == 0.0
    assert seen["backbone.vit.blocks.1.norm2.weight"][0] == 0.0
    assert seen["backbone.vit.blocks.1.attn.qkv.weight"] == (1.0, 1.0, False)
    assert seen["dino_head.last_layer.weight_v"] == (1.0, 1.0, True)
    assert seen["ibot_head.mlp.0.bias"] == (0.0, 1.0, False)


# -- bad files: one line naming the file and the fix, exit code 1, never a traceback ------------------------------
class _NotATensor:  # pickled by reference: torch.load(weights_only=True) refuses it
    pass


def _train_cli(images, out, *settings, max_steps=2):
    from typer.testing import CliRunner

    from bench.cli import app

    args = ["train", "--preset", "tiny-cpu", "--data", str(images), "--out", str(out), "--max-steps", str(max_steps)]
    return CliRunner().invoke(app, args + [a for item in SMALL + list(settings) for a in ("--set", item)])


def _one_error_line(result, *expected, code: int = 1) -> str:
    """The command failed as a user error: exit code ``code`` (1: something to fix; 2: a usage error), its whole
    output one `error:` line holding ``expected``."""
    assert isinstance(result.exception, SystemExit) and result.exit_code == code, (result.output, result.exc_info)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_bad_checkpoints_are_one_line_errors_naming_the_file(images, tmp_path):
    config = get_preset("tiny-cpu").override(SMALL)
    Trainer(config, images, tmp_path / "good", log=lambda m: None).train(2)
    good = tmp_path / "good" / "checkpoint.pth"
    state = torch.load(good, weights_only=True)

    def bad(name, write):
        out = tmp_path / name
        out.mkdir()
        write(out / "checkpoint.pth")
        return out

    wrong_shape = {**state, "student": {**state["student"], "backbone.vit.pos_embed": torch.zeros(1, 5, 48)}}
    optimizer = {"state": {**state["optimizer"]["state"], 0: {**state["optimizer"]["state"][0],
                                                               "exp_avg": torch.zeros(3)}},
                 "param_groups": state["optimizer"]["param_groups"]}
    cases = {
        "truncated": (lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
                      ["cannot read checkpoint", "truncated"]),
        "empty": (lambda p: p.write_bytes(b""), ["cannot read checkpoint"]),
        "refused": (lambda p: torch.save({**state, "student": _NotATensor()}, p),
                    ["refusing to load checkpoint", "_NotATensor"]),
        "keys": (lambda p: torch.save({"student": state["student"]}, p),
                 ["not a checkpoint of this trainer", "teacher", "optimizer", "iteration"]),
        "shapes": (lambda p: torch.save(wrong_shape, p),
                   ["its student does not fit", "backbone.vit.pos_embed: file (1, 5, 48) vs model (1, 17, 48)"]),
        "optimizer": (lambda p: torch.save({**state, "optimizer": optimizer}, p), ["exp_avg", "shape (3,)"]),
        "folder": (lambda p: p.mkdir(), ["is not a file"]),
    }
    for name, (write, expected) in cases.items():
        out = bad(name, write)
        line = _one_error_line(_train_cli(images, out), str(out / "checkpoint.pth"), *expected)
        assert "another --out folder" in line and "delete" in line, line
        assert not (out / "exports").exists()  # refused before anything was written

    resumed = _train_cli(images, tmp_path / "good", max_steps=3)  # the good checkpoint still resumes
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output and "at iteration 2" in resumed.output


def test_bad_init_files_are_one_line_errors_naming_the_file(images, tmp_path):
    from dinobloom_train.train import _load_init

    config = get_preset("tiny-cpu").override(SMALL)
    own = config.architecture.create().state_dict()
    torch.save(own, tmp_path / "fits.pth")
    assert set(_load_init(config.override([f"init={tmp_path / 'fits.pth'}"]))) == set(own)
    torch.save({**own, "blocks.0.attn.qkv.weight": torch.zeros(3, 3), "extra": torch.zeros(1)}, tmp_path / "shapes.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "fits.pth").read_bytes()[:5000])
    torch.save({"model": _NotATensor()}, tmp_path / "refused.pth")
    torch.save({"model": {"pos_embed": "text"}}, tmp_path / "strings.pth")
    cases = {
        "absent.pth": ["does not exist"],
        "shapes.pth": ["does not fit", "1 unexpected keys: extra",
                       "blocks.0.attn.qkv.weight: file (3, 3) vs model (144, 48)"],
        "truncated.pth": ["cannot read weight file", "truncated"],
        "refused.pth": ["refusing to load", "_NotATensor"],
        "strings.pth": ["does not hold a state dict of tensors"],
    }
    for name, expected in cases.items():
        line = _one_error_line(_train_cli(images, tmp_path / f"out-{name}", f"init={tmp_path / name}"),
                               str(tmp_path / name), *expected)
        if name != "truncated.pth" and name != "refused.pth":  # read_state_dict's own advice for those
            assert "--set init=PATH" in line and "--set init=random" in line, line


def test_unreadable_images_and_lists_are_one_line_errors(images, tmp_path):
    for path in sorted((images / "b").iterdir()):  # half the images are truncated: the first batch holds some
        path.write_bytes(path.read_bytes()[:60])
    _one_error_line(_train_cli(images, tmp_path / "run", "num_workers=1"), str(images / "b"))  # from a worker
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_bytes(b"a/\xff\xfe.png\n")
    _one_error_line(_train_cli(lists, tmp_path / "run2"), str(lists / "train.txt"), "not UTF-8")
    (tmp_path / "file").write_text("x")
    _one_error_line(_train_cli(images, tmp_path / "file"), str(tmp_path / "file"), "is a file")


def test_a_checkpoint_half_written_by_a_killed_process_is_never_read(images, tmp_path):
    """checkpoint.pth is replaced atomically: a run killed while saving leaves the previous checkpoint whole (and a
    temporary file, removed on resume); its log is cut back to what the checkpoint holds."""
    config = get_preset("tiny-cpu").override(SMALL)
    out = tmp_path / "run"
    Trainer(config, images, out, log=lambda m: None).train(2)
    checkpoint = out / "checkpoint.pth"
    before = checkpoint.read_bytes()
    with open(out / "log.jsonl", "a") as fh:  # the killed run had taken step 3 and was writing step 4's line
        fh.write(json.dumps({"iteration": 3, "loss": 1.0}) + '\n{"iteration": 4, "lo')
    kill = ("import os, signal, sys\nfrom bench.core.files import atomic_write\n"
            "def half(fh):\n    fh.write(b'PK' * 100000)\n    fh.flush()\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "atomic_write(__import__('pathlib').Path(sys.argv[1]), half)\n")
    done = subprocess.run([sys.executable, "-c", kill, str(checkpoint)], cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -9
    leftovers = list(out.glob(".checkpoint.pth.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 200000 and checkpoint.read_bytes() == before
    messages = []
    resumed = Trainer(config, images, out, log=messages.append)
    assert resumed.iteration == 2 and not list(out.glob(".checkpoint.pth.*.tmp"))
    assert any("removed 1 half-written file" in m for m in messages)
    assert [json.loads(line)["iteration"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2]
    resumed.train(3)
    assert [json.loads(line)["iteration"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_train_ends_with_where_its_exports_are_and_how_to_evaluate_one(images, tmp_path):
    done = _train_cli(images, tmp_path / "run", max_steps=1)
    assert done.exit_code == 0, done.output
    exports = sorted((tmp_path / "run" / "exports").glob("teacher_*.pth"))
    assert [e.name for e in exports] == ["teacher_0000000.pth", "teacher_0000001.pth"]
    assert done.output.strip().splitlines()[-1] == (f"2 export(s) in {tmp_path / 'run' / 'exports'}; evaluate the "
                                                    f"last one with: bench run -e trained:{exports[-1]} -t TASK")


def test_an_export_as_weights_of_a_builtin_is_refused_pointing_at_trained(images, tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    trainer = Trainer(get_preset("tiny-cpu").override(SMALL), images, tmp_path / "run", log=lambda m: None)
    export = trainer.export()  # iteration 0: no training step needed
    done = CliRunner().invoke(app, ["check-extractor", "dinobloom-s", "--weights", str(export)])
    line = _one_error_line(done, f"--weights {export} is a `bench train` export (preset tiny-cpu, iteration 0",
                           f"evaluate it with -e trained:{export} instead of -e dinobloom-s --weights", code=2)
    assert "do not fit" not in line
