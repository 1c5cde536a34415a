"""Where a checkpoint's architecture comes from: a zoo model by name, or a user's own
``torch.nn.Module`` class, named ``pkg.module:Class`` (imported with importlib) or
``path/to/file.py:Class`` (loaded from the file).

Importing a class runs its module's code, so a checkpoint alone never causes an import: the
record it carries (``arch.source``) is imported only when the user named that class on the
command line (``--model``) or said to trust the checkpoint (``--trust-model-code``); see
``from_record``. Nothing is imported before that decision.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .compress.validate import _first_line, _show
from .errors import UserError

SPEC_FORMS = "a zoo name, pkg.module:Class or path/to/file.py:Class"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

# Modules loaded from files, by resolved path: a second load of the same file reuses the module
# (its body, possibly slow or with side effects, runs once per process).
_FILE_MODULES: dict[Path, ModuleType] = {}


@dataclass(frozen=True)
class ModelSource:
    name: str  # zoo name, or the class name for an imported class
    kwargs: dict  # constructor keyword arguments (JSON-like plain values)
    source: str | None = None  # None: zoo model; else "pkg.module:Class" or "path/to/file.py:Class"

    def build(self) -> torch.nn.Module:
        """A fresh instance (built on the caller's default device, e.g. meta)."""
        if self.source is None:
            from .zoo import build_model

            return build_model(self.name, **self.kwargs)
        cls = _import_class(_Spec.parse(self.source))
        try:
            return cls(**self.kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's constructor: any failure is theirs to fix
            raise UserError(f"{self.source} does not build with kwargs {self.kwargs}: {_first_line(exc)}") from None

    def default_input_shape(self) -> tuple[int, ...] | None:
        """The zoo model's input shape; for a class, its ``INPUT_SHAPE`` attribute if it has one."""
        if self.source is None:
            from .zoo import input_shape

            return input_shape(self.name)
        cls = _import_class(_Spec.parse(self.source))
        shape = getattr(cls, "INPUT_SHAPE", None)
        if shape is None:
            return None
        if not _is_shape(shape):
            raise UserError(f"{self.source}: INPUT_SHAPE is {shape!r}, not 1-4 positive integers such as (3, 32, 32)")
        return tuple(shape)

    def record(self) -> dict:
        """The checkpoint's ``arch`` entry."""
        return {"name": self.name, "kwargs": dict(self.kwargs), "source": self.source}


def from_spec(spec: str, kwargs: dict | None = None) -> ModelSource:
    """What the user typed after --model: a zoo name (zoo names take precedence) or an import
    spec. The user named it, so the class is imported here and the kwargs checked against its
    constructor."""
    kwargs = _check_kwargs_plain(kwargs)
    from .zoo import _module, available_models

    if spec in available_models():
        _check_signature(_module(spec).build, kwargs, f"model '{spec}'")
        return ModelSource(spec, kwargs)
    if ":" not in spec:
        raise UserError(f"unknown model '{spec}': choose one of {', '.join(available_models())}, "
                        "or name your own class as pkg.module:Class or path/to/file.py:Class")
    parsed = _Spec.parse(spec)
    cls = _import_class(parsed)
    _check_signature(cls, kwargs, parsed.text)
    return ModelSource(parsed.name, kwargs, parsed.text)


def from_module(model: torch.nn.Module, kwargs: dict | None = None) -> ModelSource:
    """The source of ``type(model)`` for the Python API: its import path, or the absolute path of
    its file when its module has no importable name (``__main__``, a module loaded from a file)."""
    kwargs = _check_kwargs_plain(kwargs)
    cls = type(model)
    if "<locals>" in cls.__qualname__:
        raise UserError(f"{cls.__qualname__} is defined inside a function, so it cannot be imported again: "
                        "define the class at module level")
    module_name = _importable_name(sys.modules.get(cls.__module__))
    if module_name is not None:
        spec = f"{module_name}:{cls.__qualname__}"
    else:
        try:
            file = Path(inspect.getfile(cls)).resolve()
        except (TypeError, OSError):
            raise UserError(f"{cls.__qualname__} has neither an importable module nor a source file: "
                            "define it in a .py file") from None
        spec = f"{file}:{cls.__qualname__}"
    _check_signature(cls, kwargs, spec)
    return ModelSource(cls.__qualname__.rpartition(".")[2], kwargs, spec)


def from_record(arch: dict, *, model: str | None = None, trust: bool = False) -> ModelSource:
    """The architecture a checkpoint's ``arch`` entry names, under the consent rule: a zoo record
    (no ``source``: version-1 checkpoints have none) needs nothing; a record with a source is
    imported only when ``model`` (the user's --model) names the same class (and module, or file
    name: the file may have moved), then from ``model``, or with ``trust``, then from the
    record itself. Nothing is imported before that."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise UserError(f"checkpoint arch is {_show(arch)}, not a table with the model's name and kwargs")
    name, kwargs, source = arch["name"], arch.get("kwargs") or {}, arch.get("source")
    if source is None:
        if model is not None and model != name:
            raise UserError(f"--model {model} does not match the checkpoint, which is zoo model {name}: "
                            f"drop --model or pass --model {name}")
        return ModelSource(name, dict(kwargs))
    if not isinstance(source, str):
        raise UserError(f"checkpoint arch.source is {_show(source)}, not pkg.module:Class or file.py:Class")
    needed = _Spec.parse(source, what="the checkpoint's arch.source")
    allow = (f"pass --model {needed.text} (or --trust-model-code to import what the checkpoint names)")
    if model is not None:
        given = _Spec.parse(model, what="--model") if ":" in model else None
        if given is None or not given.matches(needed):
            raise UserError(f"--model {model} does not match the checkpoint, which needs model class "
                            f"{needed.text}: {allow}")
        chosen = given
    elif trust:
        chosen = needed
    else:
        raise UserError(f"checkpoint needs model class {needed.text}, which admm-hls imports only when you "
                        f"name it: {allow}")
    # Consent established: import.
    picked = from_spec(chosen.text, kwargs)
    return ModelSource(name, picked.kwargs, picked.source)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """"3,32,32" -> (3, 32, 32)."""
    parts = [p.strip() for p in text.strip().strip("()[]").split(",")]
    if parts and parts[-1] == "":  # "28," for a one-dimensional input
        parts.pop()
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--input-shape {text!r} is not 1-4 positive integers separated by commas: "
                        "give e.g. --input-shape 3,32,32 (channels, height, width)")
    return tuple(int(p) for p in parts)


def parse_kwargs(text: str) -> dict:
    """A JSON object of constructor keyword arguments, e.g. '{"num_classes": 10}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"model kwargs {text!r} are not valid JSON ({exc.msg} at character {exc.pos}): "
                        "give a JSON object such as '{\"num_classes\": 10}'") from None
    if not isinstance(value, dict):
        raise UserError(f"model kwargs {text!r} are a JSON {type(value).__name__}, not an object: "
                        "give e.g. '{\"num_classes\": 10}'")
    return value


# -- specs and imports ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """A parsed import spec; parsing imports nothing."""

    text: str  # as given (a file spec: with its file made absolute)
    target: str  # dotted module path, or the file
    qualname: str  # the class, possibly nested ("Outer.Inner")
    is_file: bool

    @property
    def name(self) -> str:
        return self.qualname.rpartition(".")[2]

    @classmethod
    def parse(cls, spec: str, what: str = "--model") -> _Spec:
        target, sep, qualname = spec.rpartition(":")  # rpartition: a file path may hold a ':'
        bad = f"{what} {spec!r} is not pkg.module:Class or path/to/file.py:Class"
        if not sep or not target or not _DOTTED.fullmatch(qualname):
            raise UserError(bad)
        if target.endswith(".py") or "/" in target or "\\" in target:
            file = Path(target).expanduser().resolve()
            return cls(f"{file}:{qualname}", str(file), qualname, True)
        if not _DOTTED.fullmatch(target):
            raise UserError(bad)
        return cls(spec, target, qualname, False)

    def matches(self, needed: _Spec) -> bool:
        """Same class; for modules the same module path; for files the same file name."""
        if self.qualname != needed.qualname or self.is_file != needed.is_file:
            return False
        return Path(self.target).name == Path(needed.target).name if self.is_file else self.target == needed.target


def _import_class(spec: _Spec) -> type:
    module = _load_file(spec) if spec.is_file else _load_module(spec)
    try:
        cls = reduce(getattr, spec.qualname.split("."), module)
    except AttributeError:
        defined = sorted(n for n, v in vars(module).items()
                         if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == module.__name__)
        raise UserError(f"{spec.target} has no class {spec.qualname}"
                        + (f" (its nn.Module classes: {', '.join(defined)})" if defined else "")
                        + ": check the name after the ':'") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise UserError(f"{spec.text} is not a torch.nn.Module subclass ({_show(cls)}): name the model's class")
    return cls


def _load_module(spec: _Spec) -> ModuleType:
    try:
        return importlib.import_module(spec.target)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if spec.target == missing or spec.target.startswith(missing + "."):
            raise UserError(f"module {spec.target} not found: install it or add its folder to PYTHONPATH "
                            "(or name the file, path/to/file.py:Class)") from None
        raise UserError(f"importing {spec.target} failed: it needs module {missing}, which is not installed") from None
    except Exception as exc:  # noqa: BLE001 - the user's module body: any failure is theirs to fix
        raise UserError(f"importing {spec.target} failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _load_file(spec: _Spec) -> ModuleType:
    file = Path(spec.target)
    if file in _FILE_MODULES:
        return _FILE_MODULES[file]
    if not file.is_file():
        raise UserError(f"model file {file} not found: give the path of the .py file that defines {spec.qualname}")
    # A name of its own per file (stem + path digest): two model.py files in different folders
    # do not collide, and the module sits in sys.modules as dataclasses and pickling expect.
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", file.stem)
    name = f"admm_hls_user_{stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"model file {file} is not a Python source file: give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module body: any failure is theirs to fix
        del sys.modules[name]
        raise UserError(f"loading {file} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    _FILE_MODULES[file] = module
    return module


def _importable_name(module: ModuleType | None) -> str | None:
    """The name ``module`` imports under in a fresh process, or None (a script's ``__main__``, a
    module loaded from a file under a made-up name). Looks the name up without importing."""
    if module is None:
        return None
    name = module.__name__
    if name == "__main__":
        spec = getattr(module, "__spec__", None)  # run with -m: the module's real name
        name = spec.name if spec is not None and spec.name != "__main__" else None
        return name
    parent, _, _ = name.rpartition(".")
    path = getattr(sys.modules.get(parent), "__path__", None) if parent else None
    if parent and path is None:
        return None
    found = importlib.machinery.PathFinder.find_spec(name, path)
    origin = getattr(module, "__file__", None)
    if found is None or origin is None or found.origin is None:
        return None
    return name if Path(found.origin).resolve() == Path(origin).resolve() else None


# -- checks -----------------------------------------------------------------------------------------
def _check_signature(fn, kwargs: dict, what: str) -> None:
    """Reject kwargs the constructor cannot take, without building the model."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no introspectable signature: the constructor itself will say
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise UserError(f"{what} does not take kwargs {kwargs}: {exc}") from None


def _check_kwargs_plain(kwargs: dict | None) -> dict:
    """Constructor kwargs are stored in the checkpoint, which holds plain values only."""
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise UserError(f"model kwargs {_show(kwargs)} are not a table of keyword arguments")
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise UserError(f"model kwarg {key}={_show(value)} is not a plain value (number, string, bool, None, "
                            "or lists and tables of them): a checkpoint can store only those")
    return dict(kwargs)


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _is_shape(shape: Any) -> bool:
    return (isinstance(shape, (list, tuple)) and 1 <= len(shape) <= 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape))
