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


def test_a_built_in_name_is_written_only_where_it_is_registered():
    """The registered name is the one place: the resolved objects carry it, the module-level objects the targets
    point at carry none, and the registry refuses a target that names itself."""
    import dataclasses
    import sys

    from extractors import EXTRACTORS, get_extractor
    from extractors.base import ExtractorEntry
    from protocols import PROTOCOLS, get_protocol
    from protocols.base import Protocol
    from tasks import TASKS, get_task
    from tasks.base import Task

    # a few by hand (the names as `bench list` prints them and results are filed under)
    assert get_extractor("vit-s14-random").name == "vit-s14-random" and get_extractor("vit-s14-random").dim == 384
    assert get_extractor("resnet50-pool").name == "resnet50-pool" and get_extractor("resnet50-pool").dim == 2048
    assert get_extractor("kaiko-vitb8").name == "kaiko-vitb8" and get_extractor("kaiko-vitb8").family == "kaiko"
    assert get_task("acevedo-11").name == "acevedo-11" and len(get_task("acevedo-11").expected_classes) == 11
    assert get_protocol("knn-20").name == "knn-20" and get_protocol("knn-20").k == 20
    resolved = {}
    for registry, base in ((EXTRACTORS, ExtractorEntry), (TASKS, Task), (PROTOCOLS, Protocol)):
        for name in registry.names():
            obj = registry.get(name)
            assert isinstance(obj, base) and obj.name == name, (registry.kind, name, obj.name)
            resolved[id(obj)] = name
    # every module-level object of the three packages (what `from tasks.acevedo import ACEVEDO` gives) is nameless
    modules = [m for n, m in sorted(sys.modules.items()) if n.split(".")[0] in ("extractors", "tasks", "protocols")]
    module_objects = [(module.__name__, attr, value) for module in modules for attr, value in vars(module).items()
                      if isinstance(value, (ExtractorEntry, Task, Protocol))]
    assert len(module_objects) >= len(resolved), module_objects  # each built-in's target is among them
    assert [(m, a, v.name) for m, a, v in module_objects if v.name] == []
    from tasks.acevedo import ACEVEDO

    # the same task, named (and summarised) by the registry
    assert get_task("acevedo") == dataclasses.replace(ACEVEDO, name="acevedo", summary=TASKS.summaries()["acevedo"])


def test_a_built_in_target_that_names_itself_is_refused(tmp_path, monkeypatch):
    from protocols.knn import KNNProtocol

    (tmp_path / "named_protocols.py").write_text(
        "from protocols.knn import KNNProtocol\nNAMED = KNNProtocol('knn-5', k=5)\nNAMELESS = KNNProtocol(k=5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("protocol", base="protocols.base:Protocol")
    registry.add_lazy("knn-5", "named_protocols:NAMED")
    registry.add_lazy("knn-five", "named_protocols:NAMELESS", summary="5-NN")
    with pytest.raises(RegistryError, match=r"protocol 'knn-5': its target named_protocols:NAMED names itself 'knn-5'"):
        registry.get("knn-5")
    five = registry.get("knn-five")
    assert isinstance(five, KNNProtocol) and (five.name, five.summary, five.k) == ("knn-five", "5-NN", 5)
    # a plugin file's object names itself (the name is not registered anywhere else)
    plugin = tmp_path / "my_protocols.py"
    plugin.write_text("from protocols.knn import KNNProtocol\nMINE = KNNProtocol('knn-mine', k=3)\n")
    from protocols import get_protocol

    assert get_protocol(f"{plugin}:MINE").name == "knn-mine"


def test_a_task_card_reads_every_field_from_its_task():
    """`TaskCard` holds no fact of its own: each field is the task's attribute of that name (`classes`: the
    task's `expected_classes`), for built-ins and for a task changed with `dataclasses.replace`."""
    import dataclasses

    from tasks import TASKS, get_task
    from tasks.acevedo import ACEVEDO_CLASSES
    from tasks.base import CELL_PROTOCOLS, TaskCard

    shape = ("name", "summary", "kind", "protocols", "main_metric", "obtain", "layout", "evaluation", "licence",
             "citation", "classes", "full_set_images", "canonical_split_sha256", "preprocessing")
    assert tuple(f.name for f in dataclasses.fields(TaskCard)) == shape  # what `bench data info` and records read
    card = get_task("acevedo").card
    assert (card.name, card.kind, card.protocols, card.main_metric) == ("acevedo", "cells", CELL_PROTOCOLS,
                                                                         "weighted_f1")
    assert card.classes == ACEVEDO_CLASSES and len(card.classes) == 8
    assert (card.licence, card.full_set_images, card.preprocessing) == ("CC BY 4.0", 17_092, "authors-cv")
    assert card.canonical_split_sha256 == "5e4087821c0c6fad63351e85cd5cfac4f678c71f3e6aa6190d64fd25d28ffc60"
    assert card.summary == TASKS.summaries()["acevedo"] and "Mendeley" in card.obtain
    assert card.evaluation.startswith("portable stratified 5-fold CV") and "PBC_dataset_normal_DIB" in card.layout
    bags = get_task("aml-hehr").card
    assert (bags.kind, bags.protocols, bags.classes, bags.full_set_images) == ("bags", ("abmil-paper", "abmil-gated"),
                                                                             (), None)
    for name in TASKS.names():
        task = get_task(name)
        card = task.card
        for field in shape:
            expected = task.expected_classes if field == "classes" else getattr(task, field)
            expected = tuple(expected) if field in ("classes", "protocols") else expected
            assert getattr(card, field) == expected, (name, field)
    changed = dataclasses.replace(get_task("acevedo"), name="mine", licence="ours", protocols=["knn-1"], n_folds=3,
                                  fine_labels=True, preprocessing="direct")
    assert (changed.card.name, changed.card.licence, changed.card.protocols) == ("mine", "ours", ("knn-1",))
    assert changed.card.evaluation.startswith("portable stratified 3-fold CV") and len(changed.card.classes) == 11
    assert changed.card.preprocessing == "direct" and hash(changed.card)  # a frozen card: lists become tuples


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
