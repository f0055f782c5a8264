import subprocess
import sys
import textwrap

import pytest

from bench.core.registry import Registry, RegistryError
from tests.conftest import REPO


def test_decorator_lazy_and_duplicates(tmp_path, monkeypatch):
    registry = Registry("widget")

    @registry.register("alpha")
    def alpha():
        """Alpha widget."""

    module = tmp_path / "lazy_widgets.py"
    module.write_text("LOADED = True\nBETA = 'beta object'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.add_lazy("beta", "lazy_widgets:BETA", summary="beta, lazily")
    assert registry.summaries() == {"alpha": "Alpha widget.", "beta": "beta, lazily"}
    assert "lazy_widgets" not in sys.modules  # listing imports nothing
    assert registry.get("beta") == "beta object"
    assert "lazy_widgets" in sys.modules
    with pytest.raises(RegistryError, match="already registered"):
        registry.add_lazy("alpha", "x:y")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("beta")(lambda: None)


def test_unknown_name_suggests():
    from extractors import EXTRACTORS

    with pytest.raises(RegistryError) as info:
        EXTRACTORS.get("vit-s14-randm")
    assert "Did you mean 'vit-s14-random'" in str(info.value)
    assert "bench list extractors" in str(info.value)


def test_entry_point_group(tmp_path, monkeypatch):
    """A third-party package announces an extractor through the `hemabench.extractors` entry-point group."""
    (tmp_path / "thirdparty_ext.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            class Mean(nn.Module):
                '''Channel means.'''
                dim = 3
                def forward(self, x):
                    return x.mean(dim=(2, 3))
            """
        )
    )
    dist = tmp_path / "thirdparty_ext-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-ext\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hemabench.extractors]\nchannel-mean = thirdparty_ext:Mean\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("extractor", entry_point_group="hemabench.extractors")
    assert "channel-mean" in registry.names()
    assert registry.get("channel-mean").__name__ == "Mean"


def test_listing_imports_no_model_code():
    code = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from bench.cli import app
        for kind in ("extractors", "tasks", "protocols"):
            result = CliRunner().invoke(app, ["list", kind])
            assert result.exit_code == 0, result.output
        heavy = [m for m in ("torch", "timm", "torchvision", "sklearn") if m in sys.modules]
        assert not heavy, heavy
        print(result.output)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "knn-20" in done.stdout


def test_file_targets_are_not_listed_as_registered_names():
    from extractors import EXTRACTORS, get_extractor
    from tests.conftest import TINY

    get_extractor(TINY)
    assert TINY not in EXTRACTORS.names()


def test_schemes_resolve_through_their_factory_and_are_listed(tmp_path):
    from bench.core.errors import UsageError
    from extractors import EXTRACTORS
    from protocols import PROTOCOLS
    from tasks import TASKS, get_task
    from tasks.imagefolder import CellTask

    assert set(EXTRACTORS.schemes()) == {"timm", "hf", "openclip", "trained"}
    assert set(TASKS.schemes()) == {"imagefolder", "csv", "bags"} and not PROTOCOLS.schemes()
    task = get_task(f"imagefolder:{tmp_path}")
    assert isinstance(task, CellTask) and task.fixed_root == tmp_path.resolve() and task.card.kind == "cells"
    with pytest.raises(UsageError, match="say what to load after 'imagefolder:'"):
        get_task("imagefolder:")
    with pytest.raises(RegistryError, match=r"'imagefolder:PATH'.*'path/to/file.py:Name'"):
        get_task("imagefoldr:/x")


def test_a_resolved_object_is_checked_against_the_registry_base(tmp_path, monkeypatch):
    from protocols import get_protocol
    from tasks import get_task

    plugin = tmp_path / "wrong_things.py"
    plugin.write_text("NOT_A_TASK = 42\nclass Klass:\n    pass\n")
    with pytest.raises(RegistryError, match="resolves to a int, not a Task"):
        get_task(f"{plugin}:NOT_A_TASK")
    with pytest.raises(RegistryError, match="resolves to a type, not a Protocol"):
        get_protocol(f"{plugin}:Klass")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("widget", base=int)
    registry.add_lazy("lazy-class", "wrong_things:Klass")
    with pytest.raises(RegistryError, match="widget 'lazy-class' resolves to a type, not a int"):
        registry.get("lazy-class")
    registry.add("eager-text", "not an int")  # objects registered directly are checked at their first lookup too
    with pytest.raises(RegistryError, match="widget 'eager-text' resolves to a str, not a int"):
        registry.get("eager-text")
    registry.add("factory", lambda: 7)
    assert registry.get("factory") == 7


def test_every_built_in_carries_its_registered_name_and_summary():
    """A built-in name and its summary are written once (at registration): the resolved objects carry them."""
    from extractors import EXTRACTORS
    from protocols import PROTOCOLS
    from tasks import TASKS
    from tasks.base import Task

    for registry in (EXTRACTORS, TASKS, PROTOCOLS):
        for name, summary in registry.summaries().items():
            obj = registry.get(name)
            assert (obj.name, obj.summary) == (name, summary) and summary, (registry.kind, name)
    for name in TASKS.names():
        card = TASKS.get(name).card
        assert isinstance(TASKS.get(name), Task) and card.name == name and card.protocols and card.obtain
        assert card.kind in ("cells", "bags") and card.layout and card.evaluation


def test_a_plugin_file_is_named_the_same_from_any_folder(tmp_path, monkeypatch):
    """`path/to/file.py:Class` is named `file.py:Class` (or the class's `name`) whichever path reaches it, with
    the same fingerprint: the same row on the board and the same cached features."""
    import shutil

    from extractors import get_extractor
    from tests.conftest import REPO

    (tmp_path / "mine").mkdir()
    shutil.copy(REPO / "tests" / "plugins" / "tiny_vit.py", tmp_path / "mine" / "tiny_vit.py")
    with open(tmp_path / "mine" / "tiny_vit.py", "a") as fh:
        fh.write("\n\nclass Named(TinyViT):\n    name = 'tiny-named'\n\n\nclass Clash(TinyViT):\n    name = 'dinov2-s'\n")
    monkeypatch.chdir(tmp_path)
    here = get_extractor("mine/tiny_vit.py:TinyViT")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    there = get_extractor("../mine/tiny_vit.py:TinyViT")
    assert here.name == there.name == "tiny_vit.py:TinyViT"
    assert (here.architecture, here.code_sha256) == (there.architecture, there.code_sha256)
    assert get_extractor("../mine/tiny_vit.py:Named").name == "tiny-named"
    assert get_extractor("../mine/tiny_vit.py:Clash").name == "tiny_vit.py:Clash"  # a built-in's name stays its own


def test_a_misspelt_name_in_a_plugin_file_lists_what_the_file_defines(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.core.registry import import_target
    from tests.conftest import TINY

    done = CliRunner().invoke(app, ["check-extractor", TINY.replace(":TinyViT", ":TinyVit")])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1, done.output
    assert "has no 'TinyVit'. Did you mean 'TinyViT'?" in done.output
    assert "its classes: Constant, Crashes, DiesInRank, NaNWeights, NoDim, TinyViT, WrongShape" in done.output
    plugin = tmp_path / "my_task.py"
    plugin.write_text("import os\nfrom pathlib import Path\nclass Cells:\n    pass\nTASK = Cells()\nsize = 3\n")
    with pytest.raises(ValueError, match=r"has no 'TAKS'\. Did you mean 'TASK'\? \(its classes: Cells; other names: "
                                         r"TASK\)"):
        import_target(f"{plugin}:TAKS")
