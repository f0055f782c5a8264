"""A small generic registry: decorator registration, lazy ``"module:attr"`` targets, entry points.

One class serves extractors, tasks and protocols (modelled on lm-eval-harness's registry and timm's model
registry). This module imports nothing from the project so that every package may use it without pulling in
the harness core, and nothing heavy, so that ``bench --help`` and ``bench list`` stay fast.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name. ``str()`` gives the full message (KeyError would quote it)."""

    def __str__(self) -> str:  # KeyError.__str__ adds quotes around the message
        return str(self.args[0]) if self.args else ""


@dataclass
class _Slot:
    target: str | None  # "module:attr" while unresolved
    obj: Any = None
    summary: str = ""
    origin: str = "builtin"  # builtin | decorator | entry-point | file

    @property
    def resolved(self) -> bool:
        return self.target is None


def safe_name(name: str) -> str:
    """A folder-safe form of a registered name (``imagefolder:/data/x``, ``plugin.py:Class``): names that are
    already safe are kept; others become a readable slug plus 8 hex digits of the full name's sha256."""
    if re.fullmatch(r"[A-Za-z0-9._+-]+", name) and name not in (".", ".."):
        return name
    readable = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-.")[-48:] or "name"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted) or ``"path/to/file.py:attr"``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r} is not of the form 'module:attr' or 'path/to/file.py:attr'")
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name))
    else:
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no attribute {attr!r} (from target {target!r})") from None
    return obj


def _import_file(path: Path):
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"plugin file {path} does not exist")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]  # hash() is salted per process; this is not
    name = f"hemabench_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class Registry(Generic[T]):
    """Name -> object, where objects may be registered eagerly, by decorator or as lazy import targets.

    ``entry_point_group``: third-party packages add names through ``importlib.metadata`` entry points, loaded
    the first time a name is missing or the names are listed. ``allow_files``: names of the form
    ``path/to/file.py:Attr`` are imported from that file on demand. ``adapt`` turns a resolved object into
    the registry's value type (e.g. an ``nn.Module`` class into an extractor entry); it gets (name, obj).
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_point_group: str | None = None,
        allow_files: bool = False,
        adapt: Callable[[str, Any], T] | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.allow_files = allow_files
        self._adapt = adapt
        self._slots: dict[str, _Slot] = {}
        self._files: dict[str, _Slot] = {}
        self._entry_points_loaded = entry_point_group is None

    # -- registration -------------------------------------------------------------------------------------
    def _insert(self, name: str, slot: _Slot) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._slots:
            old = self._slots[name]
            raise RegistryError(
                f"{self.kind} {name!r} is already registered ({old.origin}"
                f"{': ' + old.target if old.target else ''}); choose another name"
            )
        self._slots[name] = slot

    def add(self, name: str, obj: T, *, summary: str = "", origin: str = "builtin") -> T:
        self._insert(name, _Slot(target=None, obj=obj, summary=summary or _first_doc_line(obj), origin=origin))
        return obj

    def add_lazy(self, name: str, target: str, *, summary: str = "", origin: str = "builtin") -> None:
        if ":" not in target:
            raise ValueError(f"lazy target {target!r} for {self.kind} {name!r} must be 'module:attr'")
        self._insert(name, _Slot(target=target, summary=summary, origin=origin))

    def register(self, name: str | None = None, *, summary: str = "") -> Callable[[Any], Any]:
        """Decorator: ``@REGISTRY.register("name")`` on a class, function or factory."""

        def decorator(obj: Any) -> Any:
            self.add(name or getattr(obj, "name", None) or obj.__name__, obj, summary=summary, origin="decorator")
            return obj

        return decorator

    def remove(self, name: str) -> None:
        """Unregister a name (used by tests and by plugins that replace a built-in on purpose)."""
        self._slots.pop(name, None)

    # -- lookup -------------------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._slots:
                self._slots[ep.name] = _Slot(target=ep.value, summary="", origin=f"entry-point {ep.group}")

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._slots)

    def summaries(self) -> dict[str, str]:
        """name -> one-line summary, without importing any lazy target."""
        self._load_entry_points()
        return {name: self._slots[name].summary for name in sorted(self._slots)}

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._slots

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def is_file_target(self, name: str) -> bool:
        module, sep, attr = name.partition(":")
        return bool(self.allow_files and sep and attr and module.endswith(".py"))

    def get(self, name: str) -> T:
        if self.is_file_target(name):  # loaded on demand, cached apart: not a registered name
            slot = self._files.setdefault(name, _Slot(target=name, origin="file"))
        else:
            self._load_entry_points()
            slot = self._slots.get(name)
        if slot is None:
            raise RegistryError(self.unknown_message(name))
        if not slot.resolved:
            obj = import_target(slot.target)  # type: ignore[arg-type]
            slot.obj = self._adapt(name, obj) if self._adapt else obj
            slot.summary = slot.summary or _first_doc_line(slot.obj)
            slot.target = None
        return slot.obj

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        extra = " or 'path/to/file.py:ClassName'" if self.allow_files else ""
        return f"unknown {self.kind} {name!r}.{hint} Run `bench list {self.kind}s` for all names{extra}."


def _first_doc_line(obj: Any) -> str:
    summary = getattr(obj, "summary", None) or getattr(obj, "description", None)
    if isinstance(summary, str) and summary:
        return summary.strip().splitlines()[0]
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
