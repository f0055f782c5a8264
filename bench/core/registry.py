"""The one registry idiom for extractors, tasks and protocols (after lm-eval-harness's registry and timm's).

A registry maps a name to an object, reached in one of five ways, all through :meth:`Registry.get`:

- a built-in name, registered eagerly (:meth:`~Registry.add`, the :meth:`~Registry.register` decorator) or as a
  lazy ``"module:attr"`` target (:meth:`~Registry.add_lazy`) that is imported only when the name is used;
- a scheme, ``"timm:vit_small_patch14_dinov2"`` or ``"imagefolder:/data/cells"``: the part after the colon goes
  to the scheme's factory (:meth:`~Registry.add_scheme`), which builds the object on demand;
- a file, ``"path/to/file.py:Name"`` (registries made with ``allow_files``);
- an entry point of a third-party package (``entry_point_group``).

Whatever a name resolves to is adapted (``adapt``, e.g. an ``nn.Module`` class into an extractor entry), called
when it is a zero-argument factory, checked against the registry's ``base`` class, and given its name and its
registered summary: a built-in name and its one-line summary are written once, where they are registered
(``bench list`` and the result files say the same). The object a built-in's lazy target points at carries no
name of its own (its ``name`` field is left empty, the dataclass default): one that does is refused, so that the
name cannot be written a second time. Listing names imports no target.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.core.errors import NotFoundError, RegistryError, UsageError

T = TypeVar("T")


@dataclass
class _Slot:
    target: str | None  # "module:attr" of a lazy slot, None when registered with its object
    obj: Any = None
    summary: str = ""
    origin: str = "builtin"  # builtin | decorator | entry-point | file
    ready: bool = False  # the object has been adapted, checked and named (at its first lookup)


@dataclass(frozen=True)
class Scheme:
    """``<scheme>:<argument>`` names: ``factory`` (a ``"module:attr"`` target) builds the object from the argument."""

    name: str
    factory: str
    argument: str  # what follows the colon, for help texts: PATH, MODEL, TASK, ...
    summary: str
    names_itself: bool = False  # the factory gives its objects their (display) name; else the name is the spec
    path_argument: bool = False  # the argument is a file or folder that must exist (checked by Registry.check)


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
        raise UsageError(f"target {target!r} is not of the form 'module:attr' or 'path/to/file.py:attr'")
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name))
    else:
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if obj is module and module_name.endswith(".py"):
                raise UsageError(f"plugin file {module_name} has no {part!r}.{_defined_hint(module, part)}") from None
            raise UsageError(f"{module_name} has no attribute {attr!r} (from target {target!r})") from None
    return obj


def _defined_hint(module, missing: str) -> str:
    """The names a plugin file defines (its classes and functions, and its upper-case objects such as ``TASK``),
    the closest to ``missing`` first, for the error about a name it does not define."""
    defined = {name: value for name, value in vars(module).items() if not name.startswith("_")
               and not inspect.ismodule(value)
               and (getattr(value, "__module__", None) == module.__name__ if inspect.isclass(value)
                    or inspect.isfunction(value) else name.isupper())}
    if not defined:
        return " It defines no class, function or upper-case name; check the name after ':'."
    close = difflib.get_close_matches(missing, list(defined), n=1, cutoff=0.5)
    close = close or [n for n in defined if n.lower() == missing.lower()]
    classes = sorted(n for n, v in defined.items() if inspect.isclass(v))
    others = sorted(n for n in defined if n not in classes)
    listed = "; ".join(part for part in (f"its classes: {', '.join(classes)}" if classes else "",
                                         f"other names: {', '.join(others)}" if others else "") if part)
    return (f" Did you mean {close[0]!r}?" if close else "") + f" ({listed})"


def _plugin_file(path: Path) -> Path:
    """The plugin file's absolute path, or the error saying it does not exist."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise NotFoundError(f"plugin file {path} does not exist; check the path before ':' in the name")
    return path


def _import_file(path: Path):
    path = _plugin_file(path)
    # hash() is salted per process; these are not. The content is part of the name: a file edited since it was
    # imported is imported again, so that what runs is what the results record as its source (code_sha256)
    where = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"hemabench_plugin_{path.stem}_{where}_{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import plugin file {path}; it must be a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class Registry(Generic[T]):
    """Name -> object of type ``base`` (see the module docstring for the ways a name resolves).

    ``adapt(name, obj)`` turns what a target points at into a ``base`` where it is something else (e.g. an
    ``nn.Module`` class into an extractor entry). ``base`` may be a ``"module:attr"`` target, imported at the
    first lookup (listing stays import-free).
    """

    def __init__(
        self,
        kind: str,
        *,
        base: type | str | None = None,
        entry_point_group: str | None = None,
        allow_files: bool = False,
        adapt: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.entry_point_group = entry_point_group
        self.allow_files = allow_files
        self._adapt = adapt
        self._slots: dict[str, _Slot] = {}
        self._files: dict[str, _Slot] = {}
        self._schemes: dict[str, Scheme] = {}
        self._entry_points_loaded = entry_point_group is None

    # -- registration -------------------------------------------------------------------------------------
    def _insert(self, name: str, slot: _Slot) -> None:
        if not name or not isinstance(name, str):
            raise UsageError(f"{self.kind} name must be a non-empty string, got {name!r}")
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
            raise UsageError(f"lazy target {target!r} for {self.kind} {name!r} must be 'module:attr'")
        self._insert(name, _Slot(target=target, summary=summary, origin=origin))

    def add_scheme(self, scheme: str, factory: str, *, argument: str, summary: str, names_itself: bool = False,
                   path_argument: bool = False) -> None:
        """``<scheme>:<argument>`` names resolve through ``factory(argument)`` (a lazy ``module:attr`` target);
        ``names_itself``: the objects keep the name the factory gives them (a display name that does not depend
        on how the argument was spelled), else they are named by the whole spec; ``path_argument``: the argument
        is a path, which :meth:`check` requires to exist."""
        if scheme in self._schemes:
            raise RegistryError(f"{self.kind} scheme {scheme!r}: is already registered; choose another scheme")
        self._schemes[scheme] = Scheme(scheme, factory, argument, summary, names_itself, path_argument)

    def register(self, name: str | None = None, *, summary: str = "") -> Callable[[Any], Any]:
        """Decorator: ``@REGISTRY.register("name")`` on a class, function or factory."""

        def decorator(obj: Any) -> Any:
            self.add(name or getattr(obj, "name", None) or obj.__name__, obj, summary=summary, origin="decorator")
            return obj

        return decorator

    def remove(self, name: str) -> None:
        """Unregister a name (used by tests and by plugins that replace a built-in on purpose)."""
        self._slots.pop(name, None)

    # -- listing ------------------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.entry_point_group is None:
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

    def schemes(self) -> dict[str, Scheme]:
        return dict(self._schemes)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._slots

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # -- lookup -------------------------------------------------------------------------------------------
    def is_file_target(self, name: str) -> bool:
        module, sep, attr = name.partition(":")
        return bool(self.allow_files and sep and attr and module.endswith(".py"))

    def scheme_of(self, name: str) -> Scheme | None:
        scheme, sep, _ = name.partition(":")
        return self._schemes.get(scheme) if sep and not self.is_file_target(name) else None

    def _argument(self, name: str, scheme: Scheme) -> str:
        argument = name.partition(":")[2]
        if not argument:
            raise UsageError(f"{self.kind} {name!r}: say what to load after '{scheme.name}:' ({scheme.summary})")
        return argument

    def check(self, name: str) -> None:
        """Refuse a name that cannot resolve, without importing anything it points at (so in a fraction of a
        second, before any model code): an unknown name (with the closest names), a scheme without its argument
        or whose path argument does not exist, a ``file.py:Name`` whose file does not exist. What the target
        itself holds is checked by :meth:`get`."""
        scheme = self.scheme_of(name)
        if scheme is not None:
            argument = self._argument(name, scheme)
            if scheme.path_argument and not Path(argument).expanduser().exists():
                raise NotFoundError(f"{self.kind} {name!r}: {Path(argument).expanduser().resolve()} does not exist; "
                                    f"check the path after '{scheme.name}:'")
        elif self.is_file_target(name):
            _plugin_file(Path(name.partition(":")[0]))
        elif name not in self:
            raise RegistryError(self.unknown_message(name))

    def get(self, name: str) -> T:
        scheme = self.scheme_of(name)
        if scheme is not None:  # built on demand from the argument: never cached (a file behind it may change)
            argument = self._argument(name, scheme)
            return self._resolve(name, import_target(scheme.factory)(argument), "", own_name=scheme.names_itself)
        if self.is_file_target(name):  # loaded on demand, cached apart (not a registered name) by the file's content,
            # so that a file edited since is loaded again (``_import_file``)
            content = hashlib.sha256(_plugin_file(Path(name.partition(":")[0])).read_bytes()).hexdigest()
            slot = self._files.setdefault(f"{name}\0{content}", _Slot(target=name, origin="file"))
        else:
            self._load_entry_points()
            slot = self._slots.get(name)
        if slot is None:
            raise RegistryError(self.unknown_message(name))
        if not slot.ready:  # every way in is adapted, checked and named once, at the first lookup
            obj = slot.obj if slot.target is None else import_target(slot.target)
            if slot.origin == "builtin" and slot.target is not None:
                self._refuse_own_name(name, slot.target, obj)
            slot.obj = self._resolve(name, obj, slot.summary, own_name=slot.origin == "file")
            slot.summary = slot.summary or _first_doc_line(slot.obj)
            slot.target, slot.ready = None, True
        return slot.obj

    def _refuse_own_name(self, name: str, target: str, obj: Any) -> None:
        """A built-in's name is written once, where it is registered: the object its target points at (an
        instance, or a class) leaves its ``name`` empty and is named ``name`` by :meth:`_resolve`."""
        own = getattr(obj, "name", None)
        if isinstance(own, str) and own:
            raise RegistryError(
                f"{self.kind} {name!r}: its target {target} names itself {own!r}; a built-in's name is written once, "
                f"where it is registered: leave the object's name empty"
            )

    def _resolve(self, name: str, obj: Any, summary: str, own_name: bool = False) -> Any:
        """What a target points at, as a ``base`` named ``name`` with the registered ``summary`` (if any).
        ``own_name`` (a file target, a scheme that names itself): the object keeps a name of its own, which must
        not be a registered name; without one it is named ``name``."""
        if self._adapt is not None:
            obj = self._adapt(name, obj)
        if isinstance(self.base, str):
            self.base = import_target(self.base)
        if self.base is None:
            return obj
        if not isinstance(obj, self.base) and callable(obj) and not inspect.isclass(obj):
            obj = obj()  # a zero-argument factory
        if not isinstance(obj, self.base):
            what = self.base.__name__
            raise RegistryError(
                f"{self.kind} {name!r} resolves to a {type(obj).__name__}, not a {what}; point the name at a {what} "
                f"or at a zero-argument factory returning one (`bench list {self.kind}s` shows working names)"
            )
        if not own_name:
            return _named(obj, name, summary)
        own = getattr(obj, "name", None)
        self._load_entry_points()
        if not isinstance(own, str) or not own or own == name or own in self._slots:
            # no name of its own (or a registered one, which stays the built-in's: results are never mixed up):
            # a file target is named by the file's name, not by the path it was run by
            module, _, attr = name.partition(":")
            own = f"{Path(module).name}:{attr}" if self.is_file_target(name) else name
        return _named(obj, own, summary)

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        prefix, sep, rest = name.partition(":")
        if sep and not close:  # a misspelt scheme: timmm:vit_small_patch14_dinov2
            close = [f"{s}:{rest}" for s in difflib.get_close_matches(prefix, list(self._schemes), n=1, cutoff=0.6)]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        forms = [f"'{s.name}:{s.argument}'" for s in self._schemes.values()]
        forms += ["'path/to/file.py:Name'"] if self.allow_files else []
        extra = f" (or {', '.join(forms)})" if forms else ""
        return f"unknown {self.kind} {name!r}.{hint} Run `bench list {self.kind}s` for all names{extra}."


def _named(obj: Any, name: str, summary: str) -> Any:
    """A dataclass with ``name``/``summary`` fields, carrying the registered name and summary."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    fields = {f.name for f in dataclasses.fields(obj)}
    # (is_dataclass narrows obj to DataclassInstance, which names no fields; "name"/"summary" in fields says they exist)
    changes = {"name": name} if "name" in fields and obj.name != name else {}  # pyright: ignore[reportAttributeAccessIssue]
    if summary and "summary" in fields and obj.summary != summary:  # pyright: ignore[reportAttributeAccessIssue]
        changes["summary"] = summary
    return dataclasses.replace(obj, **changes) if changes else obj


def _first_doc_line(obj: Any) -> str:
    summary = getattr(obj, "summary", None) or getattr(obj, "description", None)
    if isinstance(summary, str) and summary:
        return summary.strip().splitlines()[0]
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
